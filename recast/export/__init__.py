"""Export a preserved analysis, on one request, as a workflow another system runs.

One module per target: :mod:`recast.export.reana` (a REANA ``reana.yaml`` with a
Snakemake workflow). An export is built from the same plan ``recast run``
executes, so it runs the same commands on the same inputs.
"""

EXPORTERS = {"reana": "recast.export.reana:export"}
