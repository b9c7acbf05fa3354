"""The built-in actions: fake, estimate, rewrite, forward, reject. One file each."""
