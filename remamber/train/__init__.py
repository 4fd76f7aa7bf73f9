"""Training support for the PyTorch ReMamber (issue 16): the official loss, an in-memory dataset,
the training loop with resumable checkpoints, and ``remamber-deploy train``.

Modules: ``loss`` (dice + mean BCE-with-logits), ``data`` (RefCOCO-layout folder preloaded at the
training resolution), ``schedule`` (AdamW, warm-up + cosine), ``evaluate`` (oIoU/mIoU as the official
evaluation), ``checkpoint`` (resumable state and the fp16 export), ``loop`` (the steps), ``curve``
(the plot), ``cli`` (the command).
"""
