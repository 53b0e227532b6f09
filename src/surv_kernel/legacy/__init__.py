"""The received module's API, kept for its callers and built on the pipeline.

- :mod:`.desks`: ``analyze_feed`` (one desk's feed -> alert dicts),
  ``process_all_desks`` (a function per desk on the bounded desk pool, the
  legacy result shape), the operator helpers ``warm_up`` and ``run_demo``;
- :mod:`.records`: ``create_alert`` / ``transform_trade`` / ``load_trades``
  without the received versions' shared mutable state;
- :mod:`.processors`: the received processor classes, repaired.

``trade_surveillance_pipeline`` (the drop-in module) wraps these.
"""
