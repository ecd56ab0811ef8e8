"""Response bodies: one msgspec Struct per JSON shape the API returns (also the OpenAPI schema).

One module per resource (``data``, ``health``, ``runs``, ``assets``) and ``common`` for what every
body shares; import from here. Timestamps are aware UTC datetimes; msgspec renders them as
RFC 3339 with a ``Z`` suffix.
"""

from cryptoetl.api.schemas.assets import (
    AssetDetail,
    AssetList,
    AssetListItem,
    AssetListMeta,
    AssetMapping,
    ListPagination,
    NewsItem,
    PriceBucket,
    PriceHistory,
    PriceSeries,
    SourcePrice,
)
from cryptoetl.api.schemas.common import (
    ErrorBody,
    Meta,
    ParameterError,
)
from cryptoetl.api.schemas.data import (
    AssetRef,
    DataEnvelope,
    DataItem,
    DataMeta,
    DataPage,
    FiltersApplied,
    Pagination,
    SeriesRef,
)
from cryptoetl.api.schemas.health import (
    Health,
    Liveness,
    RunSummary,
    SourceHealth,
)
from cryptoetl.api.schemas.runs import (
    Anomaly,
    Baseline,
    CheckpointItem,
    Difference,
    KindCounts,
    RunComparison,
    RunItem,
    RunList,
    Stats,
    StatsSummary,
)

__all__ = [
    "Anomaly",
    "AssetDetail",
    "AssetList",
    "AssetListItem",
    "AssetListMeta",
    "AssetMapping",
    "AssetRef",
    "Baseline",
    "CheckpointItem",
    "DataEnvelope",
    "DataItem",
    "DataMeta",
    "DataPage",
    "Difference",
    "ErrorBody",
    "FiltersApplied",
    "Health",
    "KindCounts",
    "ListPagination",
    "Liveness",
    "Meta",
    "NewsItem",
    "Pagination",
    "ParameterError",
    "PriceBucket",
    "PriceHistory",
    "PriceSeries",
    "RunComparison",
    "RunItem",
    "RunList",
    "RunSummary",
    "SeriesRef",
    "SourceHealth",
    "SourcePrice",
    "Stats",
    "StatsSummary",
]
