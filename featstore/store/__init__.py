"""The feature store: HDF5 shards + manifest per feature set; the only way other code touches cache/."""

from featstore.store.catalog import list_feature_sets, open_feature_set
from featstore.store.featureset import FeatureSet, SplitData
from featstore.store.keys import canonical_json, default_cache, encoder_dirname, feature_key
from featstore.store.manifest import SplitIndex
from featstore.store.writer import FeatureSetWriter, now_iso

__all__ = [
    "FeatureSet", "FeatureSetWriter", "SplitData", "SplitIndex", "canonical_json", "default_cache",
    "encoder_dirname", "feature_key", "list_feature_sets", "now_iso", "open_feature_set",
]
