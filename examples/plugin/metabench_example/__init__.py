"""An example metabench plugin (see README.md here and docs/plugins.md in metabench)."""
