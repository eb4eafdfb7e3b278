"""Toy search for chargino-neutralino production in Wh -> lnu bb + MET.

Modules follow the data flow: ``generate`` (LHE events) -> ``selection``
(yields per region) -> ``patch`` (pyhf JSON Patch for the archived
``workspace``) -> ``gather`` (summary table and limit plot). ``analysis``
holds the definitions those steps share.
"""

__version__ = "1.0.0"
