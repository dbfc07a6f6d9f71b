"""Generated from proto/atelier/v1 by proto/generate.py; do not edit."""
