"""ghost-router's bundled plugins, one client per file, installed as the `ghost_router_plugins`
package with entry points (see pyproject.toml), and loadable as drop-in files too."""
