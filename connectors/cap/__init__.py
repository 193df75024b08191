"""The ``cap`` connector: Common Alerting Protocol alerts (1.1 and 1.2) in, hub events out.

Modules: ``xmldoc`` (safe parsing, unwrapping, XSD validation), ``mapping`` (the TOML file),
``convert`` (alert -> event or a reject with its reason), ``geometry`` (areas), ``signature``
(XMLDSIG against trust anchors), ``source`` (file, folder, feed, and the cursor), ``connector``
(the run through the outbox).
"""
