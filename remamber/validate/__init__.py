"""One validation layer per kind of user input, called by every entry point before any slow work.

Each module checks one kind of input and raises a ``remamber.errors`` error whose one-line message
names the input, the problem and the fix (the CLI turns it into exit code 2):

* ``numbers``     argparse ``type=`` functions for numeric / device / batch options (NaN, inf, range);
* ``paths``       input files exist and are readable; outputs are writable, not folders, not an input,
                  not an existing file of another kind unless ``--force``;
* ``text``        sentences (empty after normalisation, undecodable sentence files);
* ``tokens``      the data-dependent checks of the model inputs (token-id range, attention mask, finite
                  image, batch 0), run ONCE before any runtime so torch, ONNX Runtime and TensorRT
                  answer the same input the same way (the model's forward keeps only static checks,
                  so it stays free of host syncs and capturable);
* ``checkpoints`` state-dict values (non-floating weights, NaN/Inf), naming the tensor;
* ``graphs``      ONNX graphs given to build-engine / compare (loadable, scan nodes, attributes from the
                  registered OpSchema, op-set versions);
* ``baselines``   latency-baseline values (finite, positive).

Images are converted or refused where they are decoded, ``remamber.imageio.to_rgb`` (every PIL mode:
16-bit and float rescaled, the rest converted or refused). A new entry point (a subcommand, a server)
calls, before its slow work: ``numbers.*_type`` for its options, ``paths.check_input_file`` /
``check_output_file`` / ``check_output_dir`` for its files, ``text.check_texts`` for sentences,
``graphs.check_graph`` for ONNX files, and ``tokens.check_feeds`` on every batch before any runtime.

Modules are imported lazily by their callers so a light entry point never pulls onnx or torch.
"""
