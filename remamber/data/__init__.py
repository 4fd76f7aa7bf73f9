"""Referring-segmentation datasets: the RefCOCO-layout reader (``refcoco``) used by ``eval`` and the
synthetic shapes generator (``synthetic``) that writes the same layout."""
