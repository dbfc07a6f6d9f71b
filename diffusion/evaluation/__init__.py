"""Evaluation of a text-to-image model in the domain it was trained on.

A small domain classifier (category and style heads, :mod:`.classifier`) stands in for the
Inception network of FID/IS: its penultimate features are the space FID, KID and
precision/recall are measured in, and its probabilities give the Inception-Score analogue and
the two prompt-adherence figures. The metric arithmetic itself lives in :mod:`diffusion.metrics`
(numpy); this package is the torch side: the classifier, its training, generation from a
checkpoint, the report and the contact sheet.
"""
