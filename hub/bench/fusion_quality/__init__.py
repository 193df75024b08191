"""The quality harness of ``hub bench fusion``: simulated reporting of real incidents, scored.

Real multi-source ground truth is rare, so the benchmark takes real incidents (the SFPD
incidents of December 2018, one per ``Incident ID``, at their real place and time: the hard
negatives are the real city's density; or the SFFD calls of early 2002) and lets 1 to 4 sources
report each one, every report a real contract event with GPS noise, a delivery delay and now
and then a confused ``event_type``. A clusterer (the naive baseline, the hub's correlation model
in this process, or the whole Kafka + fusion + PostGIS path) groups the reports; B-cubed
precision, recall and F1, corroboration and the largest incident compare its groups with the
truth.

One module per job:

* ``truth``: the true incidents (SFPD, SFFD), days folded (density) or packed (storm);
* ``world``: the communities, their neighbours, metres to degrees;
* ``scenarios``: hotspots, a collision beside an unrelated medical call, floods;
* ``params`` and ``generator``: the simulated sources and their reports;
* ``scoring`` and ``baseline``: the figures, and the naive baseline to beat;
* ``variants``: the table's variants and their targets; ``hub_model``: the hub's model
  in process.

The names below are the harness's public face; import them from here.
"""

from hub.bench.fusion_quality.baseline import naive_baseline
from hub.bench.fusion_quality.generator import (
    RELATED_TYPES,
    SYSTEMS,
    GeneratedReport,
    community_system,
    generate,
    related_types,
)
from hub.bench.fusion_quality.hub_model import as_report, hub_clusterer, in_process_rows
from hub.bench.fusion_quality.params import GeneratorParams
from hub.bench.fusion_quality.scenarios import (
    hotspot_places,
    prepare,
    with_floods,
    with_hotspots,
    with_mixed_types,
)
from hub.bench.fusion_quality.scoring import (
    BCubed,
    Clusterer,
    Corroboration,
    Largest,
    bcubed,
    big_incidents,
    corroborated_share,
    corroboration,
    evaluate,
    largest_incident,
)
from hub.bench.fusion_quality.truth import (
    SFFD_CSV,
    SFFD_MAPPING,
    SFPD_MAPPING,
    TrueIncident,
    base_incidents,
    fold_days,
    sffd_incidents,
    storm,
    true_incidents,
)
from hub.bench.fusion_quality.variants import (
    VARIANTS,
    f1_target,
    select,
    sweep,
    variant_names,
    variant_reports,
)
from hub.bench.fusion_quality.world import World, local_metric, metres_to_degrees, sf_world

__all__ = [
    "RELATED_TYPES",
    "SFFD_CSV",
    "SFFD_MAPPING",
    "SFPD_MAPPING",
    "SYSTEMS",
    "VARIANTS",
    "BCubed",
    "Clusterer",
    "Corroboration",
    "GeneratedReport",
    "GeneratorParams",
    "Largest",
    "TrueIncident",
    "World",
    "as_report",
    "base_incidents",
    "bcubed",
    "big_incidents",
    "community_system",
    "corroborated_share",
    "corroboration",
    "evaluate",
    "f1_target",
    "fold_days",
    "generate",
    "hotspot_places",
    "hub_clusterer",
    "in_process_rows",
    "largest_incident",
    "local_metric",
    "metres_to_degrees",
    "naive_baseline",
    "prepare",
    "related_types",
    "select",
    "sf_world",
    "sffd_incidents",
    "storm",
    "sweep",
    "true_incidents",
    "variant_names",
    "variant_reports",
    "with_floods",
    "with_hotspots",
    "with_mixed_types",
]
