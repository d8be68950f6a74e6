"""Sub-commands of the CLI, one module each (``add_parser`` + ``run``)."""
