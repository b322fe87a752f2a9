//! The `Image` kind: a Docker image kept present (pulled) on the host, or absent.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::container::PullPolicy;
use crate::object::Object;

/// An `Image` resource.
pub type Image = Object<ImageSpec, ImageStatus>;

/// Whether the image should be on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[cfg_attr(feature = "graphql", graphql(rename_items = "PascalCase"))]
pub enum Presence {
    /// Pulled and kept on the host (the default).
    #[default]
    Present,
    /// Removed from the host if berth pulled it for this resource and no berth container uses
    /// it. An image berth did not pull (built or pulled by someone else) is left in place, and
    /// the resource says so in its conditions.
    Absent,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// What the user asks of an image: the `spec` of an `Image` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ImageSpec {
    /// The image reference, `name[:tag][@sha256:digest]`: `nginx:1.27`,
    /// `postgres@sha256:<64 hex digits>`, `registry.example.com:5000/team/app:v2`. `latest`
    /// when neither tag nor digest is given.
    pub reference: String,
    /// `Always` re-pulls on every resync so a moved tag is followed; `IfNotPresent` (the
    /// default) pulls once; `Never` only checks that the image is there.
    #[serde(default, skip_serializing_if = "is_default")]
    pub pull_policy: PullPolicy,
    /// The platform to pull, `os/arch[/variant]`, e.g. `linux/arm64/v8`; the host's own when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `Present` (the default) or `Absent`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub presence: Presence,
}

/// How far a pull has come, as the Engine reports it layer by layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct PullProgress {
    /// Bytes downloaded so far, over the layers whose size is known.
    pub current_bytes: u64,
    /// The size of those layers. Layers already on the host count as downloaded; their size
    /// is not reported by the Engine, so a pull of cached layers can show `0 of 0`.
    pub total_bytes: u64,
    /// Layers finished (downloaded and extracted, or already on the host).
    pub layers_done: u32,
    /// Layers seen so far (the Engine names them as the pull proceeds).
    pub layers_total: u32,
}

/// What the controller observed of an image: the `status` of an `Image` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ImageStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// `Ready`, `Progressing` and `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The local image id (`sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The registry digests the image is known by (`nginx@sha256:...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// The image's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// When berth last pulled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled_at: Option<DateTime<Utc>>,
    /// The local image id (`sha256:...`) berth's last pull for this resource produced. berth
    /// removes an image (for `presence: Absent`, or when the resource is deleted) only while
    /// the reference still names this very image: what berth did not pull is never removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled_image_id: Option<String>,
    /// The progress of the pull under way, summed over the image's layers; absent when no
    /// pull runs (it is cleared when the pull ends, however it ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullProgress>,
    /// The error of the last failed reconcile, with its causes (for example `pull image
    /// registry.local/app:1 failed: registry refused access ...`); cleared by the next pass
    /// that succeeds. The `Degraded` condition carries its reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When berth tries again after that failure (exponential backoff, 100 ms doubling to
    /// 5 minutes); cleared with `lastError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_image_spec_defaults_to_present_and_if_not_present() {
        let spec: ImageSpec = serde_json::from_str(r#"{"reference":"nginx:1.27"}"#).unwrap();
        assert_eq!(spec.presence, Presence::Present);
        assert_eq!(spec.pull_policy, PullPolicy::IfNotPresent);
        assert_eq!(serde_json::to_string(&spec).unwrap(), r#"{"reference":"nginx:1.27"}"#);
    }
}
