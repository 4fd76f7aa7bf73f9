"""Triton Python-backend model ``remamber_postprocess`` (written by ``remamber-deploy triton-repo``).

Per request: the probability map at the image's size from the model's logits, i.e. the nearest resize
and sigmoid of ``predict`` (``remamber.serve.pipeline.probability_map``; predict's mask is this > 0.5).
"""

import triton_python_backend_utils as pb_utils

from remamber.errors import InputError
from remamber.serve import pipeline


class TritonPythonModel:
    def initialize(self, args):
        pass

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy()  # (1, 1, S, S)
            size = pb_utils.get_input_tensor_by_name(request, "image_size").as_numpy().reshape(-1)  # (H, W)
            try:
                probability = pipeline.probability_map(logits[0], int(size[0]), int(size[1]))
            except InputError as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("probability", probability[None])]))
        return responses
