"""spcl: SPCL (Mo et al., BMVC 2021), siamese prototypical contrastive learning against false negatives.

Every epoch the training set's backbone features are PCA-whitened, L2-normalised and clustered by k-means into
`prototypes` clusters (computed once for all workers); the loss mixes three terms:
instance_weight * NT-Xent between the two views of each image (objective.temperature, MCL's group mask, the
gathered batch) + metric_weight * a siamese BCE on |h_a - h_b| of backbone features (same image or same
prototype -> 1, different prototype -> 0) + prototype_weight * cross-entropy of a linear classifier
(re-initialised every epoch) to the prototype ids.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from mcl_ray.objectives.declarations import METHODS, MethodOptions


@METHODS.register("spcl")
class SPCLOptions(MethodOptions):
    prototypes: int = Field(512, ge=2, le=1_000_000,
                            description="K: k-means prototypes per epoch (paper: 512); capped by the training set size")
    pca_dim: int = Field(256, ge=1, le=65_536,
                         description="PCA-whitening dimension before k-means (paper: 256); capped by the feature "
                                     "dimension and the sample count")
    kmeans_iterations: int = Field(20, ge=1, le=1000, description="k-means (Lloyd) iterations per epoch (paper: 20)")
    instance_weight: float = Field(1.0, ge=0.0, le=100.0, description="w_c: weight of the instance NT-Xent term")
    metric_weight: float = Field(1.0, ge=0.0, le=100.0,
                                 description="w_m: weight of the siamese metric (BCE on |h_a - h_b|) term")
    prototype_weight: float = Field(1.0, ge=0.0, le=100.0,
                                    description="w_k: weight of the prototype-classification cross-entropy term")

    @model_validator(mode="after")
    def _some_weight(self) -> "SPCLOptions":
        if self.instance_weight + self.metric_weight + self.prototype_weight <= 0:
            raise ValueError("instance_weight, metric_weight and prototype_weight are all 0: nothing to train")
        return self

    def build(self, encoder, *, temperature: float, gather: bool):
        from mcl_ray.objectives.spcl import SPCL

        return SPCL(encoder, temperature=temperature, gather=gather, prototypes=self.prototypes,
                    pca_dim=self.pca_dim, kmeans_iterations=self.kmeans_iterations,
                    instance_weight=self.instance_weight, metric_weight=self.metric_weight,
                    prototype_weight=self.prototype_weight)
