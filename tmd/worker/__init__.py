"""tmd.worker: the inference server of one deployment on one node (`tmd worker`).

    main      the command: settings, model loading on a background thread, uvicorn, SIGTERM
    settings  flags and their environment variables (pure)
    model     reading a model directory (config.json, vocabulary.json, model.pt) and warm-up
    app       the HTTP API (its docstring is the contract the operator and the shim use)
    engine    requests → queue → lanes → model, with the cache and the stats
    queue     the bounded document queue (429 when full) and the lanes' control
    lanes     allocation lanes: N threads × T intra-op threads over one TorchScript module
    cache     the inference cache, LRU bounded in bytes
    stats     Elasticsearch deployment-stats fields, 60 s buckets
    metrics   Prometheus collector over the same stats
    nlp/      tokenization and task pipelines (text in, model inputs; output in, results)
"""
