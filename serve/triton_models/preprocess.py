"""Triton Python-backend model ``remamber_preprocess`` (written by ``remamber-deploy triton-repo``).

Per request: decode the encoded image, check it and the sentence, resize + normalise to S x S and
tokenise to ReMamber's 20 slots, with the same code as ``remamber-deploy serve``
(``remamber.serve.pipeline``), so a fleet and ``serve`` answer alike. A bad request gets its own error
response; the other requests of the batch are answered. Needs ``remamber-deploy`` installed in the
Python backend's environment (README, "Serving on Triton Inference Server").

Parameters (config.pbtxt): ``resolution`` (S), ``max_image_bytes``, ``max_image_pixels``, and
optionally ``tokenizer_path`` (a local CLIP tokenizer folder).
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from remamber.errors import InputError
from remamber.serve import pipeline


def _parameter(config: dict, key: str, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return default if value in (None, "") else value


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.resolution = int(_parameter(config, "resolution"))
        self.limits = pipeline.Limits(
            int(_parameter(config, "max_image_bytes", pipeline.Limits.max_image_bytes)),
            int(_parameter(config, "max_image_pixels", pipeline.Limits.max_image_pixels)),
        )
        self.tokenizer_path = _parameter(config, "tokenizer_path")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                image = pipeline.decode_image(pb_utils.get_input_tensor_by_name(request, pipeline.IMAGE).as_numpy(), self.limits)
                text = pipeline.decode_text(pb_utils.get_input_tensor_by_name(request, pipeline.TEXT).as_numpy())
                feeds = pipeline.preprocess([image], [text], self.resolution, self.tokenizer_path)
            except InputError as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("pixels", feeds["image"]),
                pb_utils.Tensor("input_ids", feeds["input_ids"]),
                pb_utils.Tensor("attention_mask", feeds["attention_mask"]),
                pb_utils.Tensor("image_size", np.array([[image.height, image.width]], dtype=np.int64)),
            ]))
        return responses
