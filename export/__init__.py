"""remamber.export: ONNX export, graph checks, ONNX Runtime parity and TensorRT engine building.

Modules (flat package, installed as ``remamber.export``):
- scan_onnx: the ``remamber::SelectiveScan`` ONNX schema and the exporter's custom translation
- onnx_export: ``export_onnx(model, path, resolution, precision="fp32", ...)``
- resize_conv: the fp32 rewrite of each 3x3 conv of a bilinear upsample into low-resolution MatMuls
- fp16: the strongly typed half-precision model used by fp16 exports
- graph_checks: checker, shape inference, scan-node rule, fp16 typing rules, graph summary
- intermediates: the per-stage tensors ``--mark-intermediates`` adds as outputs
- ort_session: ``make_session(onnx_path, providers=None, threads=None)``
- parity_check: ORT vs PyTorch with Polygraphy's comparator and the stated tolerances
- engine_builder: TensorRT / TensorRT-RTX adapter, engine + JSON sidecar, trtexec command
- atomic: temporary-name-then-rename writes
- cli_export, cli_engine, cli_compare: the ``remamber-deploy`` subcommands
"""
