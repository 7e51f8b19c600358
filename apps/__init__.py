"""edgekit.apps: the live camera demo and the templates mobile apps embed."""
