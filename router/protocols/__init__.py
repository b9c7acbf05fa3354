"""Protocol adapters: how each client API's requests are read and its replies and errors written."""
