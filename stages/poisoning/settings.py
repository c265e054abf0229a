"""Settings of the `poisoning` config section."""

from __future__ import annotations

from pydantic import Field

from secure_pipeline.stage import StageSettings


class PoisoningSettings(StageSettings):
    """Settings of the `poisoning` section."""

    robust_z: float = Field(8.0, gt=0, description="Flag values whose robust z-score is above this (no reference).")
    range_margin: float = Field(
        0.5, ge=0, description="With a reference: flag values outside [min - m·range, max + m·range]."
    )
    k: int = Field(10, ge=1, le=200, description="Neighbours for the kNN density detector.")
    density_z: float = Field(
        6.0, gt=0, description="Flag rows whose log kNN distance is above median + z·MAD (robust z)."
    )
    near_duplicate_distance: float = Field(
        0.01, ge=0, description="Standardized Euclidean distance below which two rows are near duplicates."
    )
    max_duplicate_copies: int = Field(5, ge=1, description="More copies of one feature vector than this is a flood.")
    min_cluster_size: int = Field(5, ge=2, description="Smallest group of rows sharing a trigger value reported.")
    cluster_purity: float = Field(0.9, gt=0.5, le=1.0, description="Share of one label that makes a group a trigger cluster.")
    max_flagged_rate: float = Field(
        0.01, ge=0, le=1, description="Share of rows a clean dataset may have flagged without a baseline saying "
        "otherwise; above it (+ 3 binomial SD) the stage warns. Blocking is decided per detector against a baseline."
    )
    reference_z: float = Field(
        4.0, gt=0, description="With a reference: a value must also be this many robust SDs of the reference from its median."
    )
    isolation_z: float = Field(
        3.5, gt=0, description="Flag rows whose median robust z of kNN distance, IsolationForest score and Mahalanobis distance is above this (two of three views)."
    )
    max_isolation_rows: int = Field(200_000, ge=1000, description="IsolationForest scores a sample of this many rows beyond it.")
    max_columns: int = Field(
        500, ge=10, description="The multivariate and per-value detectors use a random sample of this many feature "
        "columns beyond it (the range check reads every column), so cost stays bounded in the number of columns."
    )
