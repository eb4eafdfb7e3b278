"""recast: preserve LHC analyses and reinterpret them on new signal models.

The data flows one way, one module per step:

    spec files --(spec, model, validate)--> validated analysis
    request    --(request)-->               validated request
    both       --(plan)-->                  jobs (a Snakemake DAG)
    plan       --(execution, environments)--> step outputs
    outputs    --(results, provenance)-->   results.json, provenance.json
"""

__version__ = "0.1.0"
