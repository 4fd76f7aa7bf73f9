"""Serving ReMamber on Triton Inference Server (installed as ``remamber.serve``).

``server``: ``remamber-deploy serve`` (PyTriton); ``repo``: ``remamber-deploy triton-repo`` (a model
repository for a standalone Triton fleet); ``bench``: ``remamber-deploy serve-bench`` (load test);
``pipeline``: request decoding and pre/post-processing shared by all of them; ``environment``: what the
PyTriton server process needs on this kind of machine. PyTriton and tritonclient are the optional
extra ``serve`` and are imported only by the commands that use them.
"""
