"""Export sources: an Atelier training checkpoint, or a diffusers pipeline folder."""
