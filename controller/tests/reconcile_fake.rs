//! Reconciler tests against the real sled store (in a temp dir) and the in-memory FakeDriver:
//! what a pass does to Docker, what it writes to status and the audit log, and that a pass with
//! nothing to do does nothing at all.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use berth_controller::docker::fake::{FakeDriver, Op};
use berth_controller::docker::{ContainerCreate, CredentialStore, Driver};
use berth_controller::labels;
use berth_controller::reconcile::container;
use berth_controller::reconcile::image::{self, ImageConfig};
use berth_controller::reconcile::intents::{self, UNKNOWN_AFTER_RESTART};
use berth_controller::reconcile::{Context, FINALIZER, report_failure};
use berth_controller::store::{
    AuditEntry, AuditEvent, AuditLog, AuditOutcome, AuditQuery, ResourceStore, SledStore,
    StoreConfig, WriteContext,
};
use berth_schemas::condition::{DEGRADED, PROGRESSING, READY, find_condition};
use berth_schemas::{
    API_VERSION, Condition, ConditionStatus, Container, ContainerStatus, DynamicObject, Image,
    ImageStatus, Kind, ObjectMeta, ResourceKey,
};
use serde_json::json;

struct Harness {
    _dir: tempfile::TempDir,
    store: SledStore,
    fake: Arc<FakeDriver>,
    ctx: Context,
}

fn harness_with(credentials: CredentialStore) -> Result<Harness> {
    let dir = tempfile::tempdir()?;
    let store = SledStore::open(StoreConfig::new(dir.path()))?;
    let fake = Arc::new(FakeDriver::new());
    let ctx = Context::new(
        Arc::new(store.clone()),
        fake.clone() as Arc<dyn Driver>,
        Arc::new(credentials),
    );
    Ok(Harness { _dir: dir, store, fake, ctx })
}

fn harness() -> Result<Harness> {
    harness_with(CredentialStore::empty())
}

fn key(name: &str) -> ResourceKey {
    ResourceKey::new(Kind::Container, "default", name)
}

fn object(kind: Kind, name: &str, spec: serde_json::Value) -> DynamicObject {
    DynamicObject {
        api_version: API_VERSION.into(),
        kind,
        metadata: ObjectMeta::named(name),
        spec,
        status: serde_json::Value::Null,
    }
}

impl Harness {
    async fn apply(&self, kind: Kind, name: &str, spec: serde_json::Value) -> Result<()> {
        self.store.apply(&WriteContext::rest_user("tester"), object(kind, name, spec)).await?;
        Ok(())
    }

    async fn get(&self, key: &ResourceKey) -> Result<Option<DynamicObject>> {
        Ok(self.store.get(key).await?)
    }

    async fn container(&self, name: &str) -> Result<Container> {
        let obj = self.get(&key(name)).await?.context("resource exists")?;
        Ok(obj.to_typed()?)
    }

    /// One reconcile pass of a Container, as the runtime would run it.
    async fn pass(&self, name: &str) -> Result<()> {
        let obj = self.container(name).await?;
        container::reconcile(&obj, &self.ctx).await?;
        Ok(())
    }

    async fn status(&self, name: &str) -> Result<ContainerStatus> {
        self.container(name).await?.status.context("status written")
    }

    /// Every audit event of a Docker action (intents and outcomes), oldest first.
    async fn docker_events(&self) -> Result<Vec<AuditEvent>> {
        let page = self
            .store
            .query(&AuditQuery { verb: None, limit: 1000, ..AuditQuery::default() })
            .await?;
        Ok(page.events.into_iter().filter(|e| e.verb.starts_with("docker.")).collect())
    }

    /// The verbs of the Docker actions taken (their outcome events), oldest first.
    async fn audit_verbs(&self) -> Result<Vec<String>> {
        Ok(self
            .docker_events()
            .await?
            .into_iter()
            .filter(|e| e.outcome != AuditOutcome::Pending)
            .map(|e| e.verb)
            .collect())
    }

    fn managed(&self) -> Vec<berth_controller::docker::ObservedContainer> {
        self.fake.containers().into_iter().filter(|c| c.is_managed()).collect()
    }
}

fn condition(conditions: &[Condition], type_: &str) -> Result<(ConditionStatus, String)> {
    let c = find_condition(conditions, type_).with_context(|| format!("{type_} condition"))?;
    Ok((c.status, c.reason.clone()))
}

const IMAGE: &str = "berth-test/busybox:1";

#[tokio::test]
async fn a_new_container_resource_is_created_started_labelled_and_reported_ready() -> Result<()> {
    let h = harness()?;
    let image_id = h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE, "env": [{"name": "A", "value": "1"}]}))
        .await?;
    h.pass("web").await?;

    let managed = h.managed();
    assert_eq!(managed.len(), 1);
    let c = &managed[0];
    assert_eq!(c.name, "berth_default_web");
    assert!(c.state.is_up());
    let obj = h.container("web").await?;
    assert_eq!(c.label(labels::UID), obj.metadata.uid.as_deref());
    assert_eq!(
        c.label(labels::SPEC_HASH),
        Some(labels::spec_hash(&obj.spec, &image_id, None).as_str())
    );
    assert!(obj.metadata.finalizers.iter().any(|f| f == FINALIZER));

    let status = h.status("web").await?;
    assert_eq!(condition(&status.conditions, READY)?, (ConditionStatus::True, "Running".into()));
    assert_eq!(status.container_id.as_deref(), Some(c.id.as_str()));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(h.audit_verbs().await?, vec!["docker.container.create", "docker.container.start"]);
    Ok(())
}

#[tokio::test]
async fn a_steady_state_pass_makes_no_mutating_docker_call_no_store_write_and_no_audit_event()
-> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    h.fake.reset_calls();
    let revision = h.store.revision();
    let audit_before = h.audit_verbs().await?.len();

    for _ in 0..3 {
        h.pass("web").await?;
    }
    assert_eq!(h.fake.mutating_calls(), 0, "calls: {:?}", h.fake.calls());
    assert_eq!(h.store.revision(), revision, "a steady-state pass must not write the store");
    assert_eq!(h.audit_verbs().await?.len(), audit_before);
    Ok(())
}

#[tokio::test]
async fn a_changed_spec_replaces_the_container_and_an_equal_one_does_not() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    let first = h.managed()[0].id.clone();

    // Re-applying the same spec changes nothing.
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    assert_eq!(h.managed()[0].id, first);

    h.apply(Kind::Container, "web", json!({"image": IMAGE, "env": [{"name": "B", "value": "2"}]}))
        .await?;
    h.fake.reset_calls();
    h.pass("web").await?;
    let managed = h.managed();
    assert_eq!(managed.len(), 1, "exactly one container after a replace");
    assert_ne!(managed[0].id, first);
    assert!(managed[0].state.is_up());
    let ops: Vec<Op> =
        h.fake.calls().into_iter().map(|c| c.op).filter(|op| op.is_mutating()).collect();
    assert_eq!(
        ops,
        vec![Op::StopContainer, Op::RemoveContainer, Op::CreateContainer, Op::StartContainer]
    );
    assert_eq!(h.status("web").await?.observed_generation, Some(2));
    Ok(())
}

#[tokio::test]
async fn desired_state_stopped_stops_the_container_and_running_starts_it_again() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    let id = h.managed()[0].id.clone();

    h.apply(Kind::Container, "web", json!({"image": IMAGE, "desiredState": "Stopped"})).await?;
    h.pass("web").await?;
    let c = &h.managed()[0];
    assert_eq!(c.id, id, "stopping must not replace");
    assert!(!c.state.is_up());
    assert_eq!(
        condition(&h.status("web").await?.conditions, READY)?,
        (ConditionStatus::True, "Stopped".into())
    );

    h.apply(Kind::Container, "web", json!({"image": IMAGE, "desiredState": "Running"})).await?;
    h.pass("web").await?;
    let c = &h.managed()[0];
    assert_eq!(c.id, id);
    assert!(c.state.is_up());
    Ok(())
}

#[tokio::test]
async fn a_container_stopped_or_removed_out_of_band_is_brought_back() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    let id = h.managed()[0].id.clone();

    assert!(h.fake.simulate_exit(&id, 137));
    h.pass("web").await?;
    assert!(h.managed()[0].state.is_up());
    assert_eq!(h.managed()[0].id, id, "a stopped container is started, not replaced");

    assert!(h.fake.simulate_remove(&id));
    h.pass("web").await?;
    let managed = h.managed();
    assert_eq!(managed.len(), 1);
    assert!(managed[0].state.is_up());
    assert_ne!(managed[0].id, id);
    Ok(())
}

#[tokio::test]
async fn a_foreign_container_holding_the_name_is_reported_and_never_touched() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    let foreign = h.fake.insert_container(
        &ContainerCreate {
            name: "berth_default_web".into(),
            image: IMAGE.into(),
            ..ContainerCreate::default()
        },
        true,
    );
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.fake.reset_calls();
    h.pass("web").await?;

    assert_eq!(h.fake.mutating_calls(), 0, "calls: {:?}", h.fake.calls());
    let all = h.fake.containers();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, foreign);
    assert!(all[0].state.is_up());
    let status = h.status("web").await?;
    assert_eq!(
        condition(&status.conditions, DEGRADED)?,
        (ConditionStatus::True, "NameConflict".into())
    );
    assert_eq!(condition(&status.conditions, READY)?.0, ConditionStatus::False);
    Ok(())
}

#[tokio::test]
async fn duplicate_containers_of_one_resource_are_reduced_to_one() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    let keep = h.managed()[0].id.clone();
    // As if a crash between create and the next observation left a second one behind.
    let mut dup = h.fake.created_spec(&keep).context("spec of the kept container")?;
    dup.name = "berth_default_web_dup".into();
    h.fake.insert_container(&dup, false);
    assert_eq!(h.managed().len(), 2);

    h.pass("web").await?;
    let managed = h.managed();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].id, keep);
    // The progress report written before the clean-up does not outlive it.
    assert_eq!(
        condition(&h.status("web").await?.conditions, PROGRESSING)?,
        (ConditionStatus::False, "Reconciled".into())
    );
    Ok(())
}

#[tokio::test]
async fn deleting_the_resource_removes_its_container_then_the_resource() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE, "stopGracePeriodSeconds": 3})).await?;
    h.pass("web").await?;
    let outcome = h.store.delete(&WriteContext::rest_user("tester"), &key("web")).await?;
    assert!(h.get(&key("web")).await?.is_some(), "the finalizer holds the resource: {outcome:?}");

    h.pass("web").await?;
    assert!(h.managed().is_empty());
    assert!(h.get(&key("web")).await?.is_none(), "the resource is gone once its container is");
    let verbs = h.audit_verbs().await?;
    assert!(verbs.ends_with(&["docker.container.stop".into(), "docker.container.remove".into()]));
    Ok(())
}

/// A running container labelled as made by store `instance` for `key` (no instance label when
/// `None`, as builds before instance ids made them).
fn labelled(h: &Harness, key: &ResourceKey, instance: Option<&str>, name: &str) -> String {
    let mut spec =
        ContainerCreate { name: name.into(), image: IMAGE.into(), ..ContainerCreate::default() };
    let owner = labels::Owner { instance: instance.unwrap_or("-"), key, uid: "gone-uid" };
    spec.labels = labels::ownership_labels(owner, "h", &Default::default());
    if instance.is_none() {
        spec.labels.remove(labels::INSTANCE);
    }
    h.fake.insert_container(&spec, true)
}

#[tokio::test]
async fn containers_left_by_a_resource_that_no_longer_exists_are_removed() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    let orphan_key = key("ghost");
    labelled(&h, &orphan_key, Some(h.store.instance_id()), "berth_default_ghost");
    container::remove_orphans(&h.ctx, &orphan_key).await?;
    assert!(h.managed().is_empty());
    Ok(())
}

#[tokio::test]
async fn orphan_removal_leaves_containers_of_another_instance_and_of_older_builds_alone()
-> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    let ghost = key("ghost");
    let other = labelled(&h, &ghost, Some("another-berth"), "berth_default_ghost");
    let legacy = labelled(&h, &ghost, None, "ghost-from-an-older-build");
    h.fake.reset_calls();
    container::remove_orphans(&h.ctx, &ghost).await?;
    assert_eq!(h.fake.mutating_calls(), 0, "calls: {:?}", h.fake.calls());
    let mut left: Vec<String> = h.managed().into_iter().map(|c| c.id).collect();
    left.sort();
    let mut want = vec![other, legacy];
    want.sort();
    assert_eq!(left, want);
    assert!(h.audit_verbs().await?.is_empty(), "nothing done, nothing audited");
    Ok(())
}

#[tokio::test]
async fn another_instances_container_holding_the_name_is_a_name_conflict_not_adopted() -> Result<()>
{
    let h = harness()?;
    h.fake.add_image(IMAGE);
    let other = labelled(&h, &key("web"), Some("another-berth"), "berth_default_web");
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.fake.reset_calls();
    h.pass("web").await?;
    assert_eq!(h.fake.mutating_calls(), 0, "calls: {:?}", h.fake.calls());
    let all = h.fake.containers();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, other);
    assert_eq!(
        condition(&h.status("web").await?.conditions, DEGRADED)?,
        (ConditionStatus::True, "NameConflict".into())
    );
    Ok(())
}

#[tokio::test]
async fn containers_berth_creates_carry_the_stores_instance_id() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    let managed = h.managed();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].label(labels::INSTANCE), Some(h.store.instance_id()));
    assert!(!h.store.instance_id().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_container_waits_for_its_dependencies_to_be_ready() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "db", json!({"image": IMAGE})).await?;
    h.apply(Kind::Container, "web", json!({"image": IMAGE, "dependsOn": [{"name": "db"}]})).await?;
    h.pass("web").await?;
    assert!(h.managed().is_empty(), "nothing is created before db is Ready");
    assert_eq!(
        condition(&h.status("web").await?.conditions, READY)?,
        (ConditionStatus::False, "WaitingForDependencies".into())
    );

    h.pass("db").await?;
    assert!(berth_schemas::readiness(&h.get(&key("db")).await?.context("db")?).is_ready());
    h.pass("web").await?;
    assert_eq!(h.managed().len(), 2);
    assert_eq!(condition(&h.status("web").await?.conditions, READY)?.0, ConditionStatus::True);
    Ok(())
}

#[tokio::test]
async fn a_missing_image_is_pulled_before_the_container_is_created() -> Result<()> {
    let h = harness()?;
    let reference = "127.0.0.1:5999/team/app:1";
    h.fake.add_registry_image(reference);
    h.apply(Kind::Container, "app", json!({"image": reference})).await?;
    h.pass("app").await?;
    let ops: Vec<Op> =
        h.fake.calls().into_iter().map(|c| c.op).filter(|op| op.is_mutating()).collect();
    assert_eq!(ops, vec![Op::PullImage, Op::CreateContainer, Op::StartContainer]);
    assert!(h.status("app").await?.image_digest.is_some());
    Ok(())
}

#[tokio::test]
async fn a_failed_pass_records_the_error_and_the_next_retry_in_status() -> Result<()> {
    let h = harness()?;
    h.apply(Kind::Container, "web", json!({"image": "127.0.0.1:5999/nothing:1"})).await?;
    let obj = h.container("web").await?;
    let err = container::reconcile(&obj, &h.ctx).await.expect_err("the image is nowhere");
    let before = chrono::Utc::now();
    report_failure(&h.ctx, &key("web"), &err, Duration::from_secs(60)).await?;
    let status = h.status("web").await?;
    let degraded = find_condition(&status.conditions, DEGRADED).context("Degraded")?;
    assert_eq!(degraded.status, ConditionStatus::True);
    assert_eq!(degraded.reason, "ImageNotFound");
    assert!(degraded.message.contains("next retry at"), "{}", degraded.message);

    // The same, as fields.
    let last_error = status.last_error.context("lastError")?;
    assert!(last_error.starts_with("pull image 127.0.0.1:5999/nothing:1"), "{last_error}");
    let retry = status.next_retry_time.context("nextRetryTime")?;
    assert!(retry >= before + chrono::Duration::seconds(59), "{retry} vs {before}");
    assert!(retry <= chrono::Utc::now() + chrono::Duration::seconds(61), "{retry}");

    // The next pass that succeeds clears them.
    h.fake.add_registry_image("127.0.0.1:5999/nothing:1");
    h.pass("web").await?;
    let status = h.status("web").await?;
    assert_eq!((status.last_error, status.next_retry_time), (None, None));
    assert_eq!(
        condition(&status.conditions, DEGRADED)?,
        (ConditionStatus::False, "AsExpected".into())
    );
    Ok(())
}

async fn image_pass(h: &Harness, name: &str) -> Result<()> {
    let obj: Image = h
        .get(&ResourceKey::new(Kind::Image, "default", name))
        .await?
        .context("image resource")?
        .to_typed()?;
    image::reconcile(&obj, &h.ctx, &ImageConfig::default()).await?;
    Ok(())
}

async fn image_status(h: &Harness, name: &str) -> Result<ImageStatus> {
    let obj: Image = h
        .get(&ResourceKey::new(Kind::Image, "default", name))
        .await?
        .context("image resource")?
        .to_typed()?;
    obj.status.context("image status")
}

fn credentials(registry: &str, user: &str, password: &str, dir: &Path) -> Result<CredentialStore> {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let json = json!({"auths": {registry: {"auth": auth}}});
    Ok(CredentialStore::parse(json.to_string().as_bytes(), &dir.join("config.json"))?)
}

#[tokio::test]
async fn an_image_behind_auth_is_pulled_with_the_configured_credentials_and_a_wrong_one_is_reported()
-> Result<()> {
    let registry = "127.0.0.1:5998";
    let reference = format!("{registry}/team/app:1");
    let tmp = tempfile::tempdir()?;

    let good = harness_with(credentials(registry, "u", "right", tmp.path())?)?;
    good.fake.add_registry_image(&reference);
    good.fake.require_registry_auth(registry, "u", "right");
    good.apply(Kind::Image, "app", json!({"reference": reference})).await?;
    image_pass(&good, "app").await?;
    let status = image_status(&good, "app").await?;
    assert_eq!(condition(&status.conditions, READY)?, (ConditionStatus::True, "Present".into()));
    assert!(status.image_id.is_some() && status.pulled_at.is_some());

    let bad = harness_with(credentials(registry, "u", "wrong", tmp.path())?)?;
    bad.fake.add_registry_image(&reference);
    bad.fake.require_registry_auth(registry, "u", "right");
    bad.apply(Kind::Image, "app", json!({"reference": reference})).await?;
    let obj: Image = bad
        .get(&ResourceKey::new(Kind::Image, "default", "app"))
        .await?
        .context("image")?
        .to_typed()?;
    let Err(err) = image::reconcile(&obj, &bad.ctx, &ImageConfig::default()).await else {
        bail!("a wrong credential must fail the pull");
    };
    report_failure(&bad.ctx, &obj.key(), &err, Duration::from_secs(1)).await?;
    let status = image_status(&bad, "app").await?;
    assert_eq!(
        condition(&status.conditions, DEGRADED)?,
        (ConditionStatus::True, "RegistryAuthFailed".into())
    );
    let last_error = status.last_error.context("lastError")?;
    assert!(last_error.contains("with registry credentials"), "{last_error}");
    assert!(status.next_retry_time.is_some());
    Ok(())
}

#[tokio::test]
async fn an_absent_image_is_kept_while_a_managed_container_uses_it_and_removed_after() -> Result<()>
{
    let h = harness()?;
    let pulled = "127.0.0.1:5997/app:1";
    h.fake.add_registry_image(pulled);
    h.apply(Kind::Image, "app", json!({"reference": pulled})).await?;
    image_pass(&h, "app").await?;
    h.apply(Kind::Container, "web", json!({"image": pulled})).await?;
    h.pass("web").await?;
    h.apply(Kind::Image, "app", json!({"reference": pulled, "presence": "Absent"})).await?;
    image_pass(&h, "app").await?;
    assert_eq!(h.fake.images().len(), 1);
    assert_eq!(
        condition(&image_status(&h, "app").await?.conditions, READY)?,
        (ConditionStatus::False, "InUse".into())
    );

    h.store.delete(&WriteContext::rest_user("tester"), &key("web")).await?;
    h.pass("web").await?;
    image_pass(&h, "app").await?;
    assert!(h.fake.images().is_empty());
    assert_eq!(
        condition(&image_status(&h, "app").await?.conditions, READY)?,
        (ConditionStatus::True, "Absent".into())
    );
    Ok(())
}

#[tokio::test]
async fn an_absent_image_berth_did_not_pull_stays_and_the_status_says_why() -> Result<()> {
    // Issue 11, hole 13: `presence: Absent` removed any unused image on the host.
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Image, "busybox", json!({"reference": IMAGE, "presence": "Absent"})).await?;
    image_pass(&h, "busybox").await?;
    assert_eq!(h.fake.images().len(), 1, "an image berth did not pull is never removed");
    let status = image_status(&h, "busybox").await?;
    assert_eq!(
        condition(&status.conditions, READY)?,
        (ConditionStatus::False, "NotPulledByBerth".into())
    );
    Ok(())
}

#[tokio::test]
async fn deleting_an_image_resource_removes_the_image_only_if_berth_pulled_it() -> Result<()> {
    let h = harness()?;
    let pulled = "127.0.0.1:5997/app:1";
    h.fake.add_registry_image(pulled);
    h.fake.add_image(IMAGE);
    h.apply(Kind::Image, "pulled", json!({"reference": pulled})).await?;
    h.apply(Kind::Image, "local", json!({"reference": IMAGE})).await?;
    image_pass(&h, "pulled").await?;
    image_pass(&h, "local").await?;
    assert_eq!(h.fake.images().len(), 2);

    for name in ["pulled", "local"] {
        let k = ResourceKey::new(Kind::Image, "default", name);
        h.store.delete(&WriteContext::rest_user("tester"), &k).await?;
        image_pass(&h, name).await?;
        assert!(h.get(&k).await?.is_none(), "{name} is gone after its cleanup");
    }
    let left: Vec<String> = h.fake.images().into_iter().flat_map(|i| i.repo_tags).collect();
    assert_eq!(left, vec![IMAGE.to_owned()], "only the image berth pulled is removed");
    Ok(())
}

#[tokio::test]
async fn a_restored_backup_keeps_the_instance_id_and_adopts_the_containers_it_made() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    let made = h.managed();
    assert_eq!(made.len(), 1);

    let backups = tempfile::tempdir()?;
    let file = backups.path().join("berth.backup");
    h.store.backup(&file)?;
    let restored_dir = backups.path().join("restored");
    berth_controller::store::backup::restore(&file, &StoreConfig::new(&restored_dir))?;
    let restored = SledStore::open(StoreConfig::new(&restored_dir))?;
    assert_eq!(restored.instance_id(), h.store.instance_id());

    // A controller over the restored store sees the container as its own: nothing to do.
    let ctx = Context::new(
        Arc::new(restored.clone()),
        h.fake.clone() as Arc<dyn Driver>,
        Arc::new(CredentialStore::empty()),
    );
    let obj: Container =
        restored.get(&key("web")).await?.context("the restored resource")?.to_typed()?;
    h.fake.reset_calls();
    container::reconcile(&obj, &ctx).await?;
    assert_eq!(h.fake.mutating_calls(), 0, "calls: {:?}", h.fake.calls());
    assert_eq!(h.managed()[0].id, made[0].id);
    Ok(())
}

#[tokio::test]
async fn each_new_data_directory_gets_its_own_instance_id_and_keeps_it_across_reopens() -> Result<()>
{
    let a = tempfile::tempdir()?;
    let b = tempfile::tempdir()?;
    let first = SledStore::open(StoreConfig::new(a.path()))?;
    let id = first.instance_id().to_owned();
    first.close();
    drop(first);
    let reopened = SledStore::open(StoreConfig::new(a.path()))?;
    assert_eq!(reopened.instance_id(), id);
    let other = SledStore::open(StoreConfig::new(b.path()))?;
    assert_ne!(other.instance_id(), id);
    Ok(())
}

/// The intent/outcome pairs of `events`: every intent (outcome `pending`) with the event that
/// names it in `intentSeq`. Fails if an outcome names no earlier intent or an intent has two.
fn pairs(events: &[AuditEvent]) -> Result<Vec<(&AuditEvent, Option<&AuditEvent>)>> {
    let mut out = Vec::new();
    for intent in events.iter().filter(|e| e.outcome == AuditOutcome::Pending) {
        let outcomes: Vec<&AuditEvent> =
            events.iter().filter(|e| e.intent_seq == Some(intent.seq)).collect();
        if outcomes.len() > 1 {
            bail!("intent {} has {} outcomes", intent.seq, outcomes.len());
        }
        if let Some(o) = outcomes.first()
            && (o.seq <= intent.seq || o.verb != intent.verb || o.name != intent.name)
        {
            bail!("outcome {o:?} does not follow its intent {intent:?}");
        }
        out.push((intent, outcomes.first().copied()));
    }
    for e in events.iter().filter(|e| e.outcome != AuditOutcome::Pending) {
        if !events.iter().any(|i| Some(i.seq) == e.intent_seq && i.outcome == AuditOutcome::Pending)
        {
            bail!("outcome {e:?} names no intent");
        }
    }
    Ok(out)
}

#[tokio::test]
async fn every_docker_action_is_an_intent_before_the_call_and_an_outcome_naming_it_after()
-> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    let events = h.docker_events().await?;
    let found = pairs(&events)?;
    let summary: Vec<(&str, AuditOutcome, Option<AuditOutcome>)> =
        found.iter().map(|(i, o)| (i.verb.as_str(), i.outcome, o.map(|o| o.outcome))).collect();
    assert_eq!(
        summary,
        vec![
            ("docker.container.create", AuditOutcome::Pending, Some(AuditOutcome::Success)),
            ("docker.container.start", AuditOutcome::Pending, Some(AuditOutcome::Success)),
        ]
    );
    for e in &events {
        assert_eq!(e.actor.to_string(), "controller");
        assert_eq!(e.source.to_string(), "controller");
    }
    assert!(
        events[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("create container berth_default_web")),
        "{:?}",
        events[0]
    );

    // A failing call: the intent, then a failure naming it, with the error.
    h.fake.simulate_exit("berth_default_web", 137);
    h.fake.fail_next(Op::StartContainer, "no space left on device", false);
    assert!(h.pass("web").await.is_err(), "the start fails");
    let events = h.docker_events().await?;
    let (intent, outcome) = *pairs(&events)?.last().context("an intent")?;
    let outcome = outcome.context("the failure is recorded")?;
    assert_eq!(intent.verb, "docker.container.start");
    assert_eq!(outcome.outcome, AuditOutcome::Failure);
    assert!(
        outcome.message.as_deref().is_some_and(|m| m.contains("no space left on device")),
        "{outcome:?}"
    );

    // Nothing to do: nothing written.
    h.pass("web").await?;
    let settled = h.docker_events().await?.len();
    h.pass("web").await?;
    assert_eq!(h.docker_events().await?.len(), settled);
    Ok(())
}

#[tokio::test]
async fn an_intent_without_an_outcome_is_settled_by_observation_on_the_next_start() -> Result<()> {
    let h = harness()?;
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    h.pass("web").await?;
    // What a controller killed between its intent and the call's result leaves behind.
    let left = h
        .store
        .append(
            AuditEntry::new(
                WriteContext::controller(),
                "docker.container.start",
                AuditOutcome::Pending,
            )
            .target("Container", Some("default".into()), "web")
            .message("start container 0123456789ab"),
        )
        .await?;
    let head = intents::audit_head(&h.ctx).await?.context("the log is not empty")?;
    assert_eq!(intents::interrupted(&h.ctx, head).await?, vec![left.clone()]);

    assert_eq!(intents::settle_interrupted(&h.ctx, head).await?, 1);
    let events = h.docker_events().await?;
    let (_, outcome) = *pairs(&events)?
        .iter()
        .find(|(i, _)| i.seq == left.seq)
        .context("the intent is still there")?;
    let outcome = outcome.context("the intent is settled")?;
    assert_eq!(outcome.outcome, AuditOutcome::Unknown);
    let message = outcome.message.clone().unwrap_or_default();
    assert!(message.starts_with(UNKNOWN_AFTER_RESTART), "{message}");
    assert!(message.contains("berth_default_web") && message.contains("running"), "{message}");
    assert_eq!(outcome.kind.as_deref(), Some("Container"));

    // Settled once: a second start finds nothing open.
    let head = intents::audit_head(&h.ctx).await?.context("head")?;
    assert!(intents::interrupted(&h.ctx, head).await?.is_empty());
    assert_eq!(intents::settle_interrupted(&h.ctx, head).await?, 0);
    Ok(())
}

#[tokio::test]
async fn only_intents_written_before_the_start_are_settled() -> Result<()> {
    let h = harness()?;
    let head_before = intents::audit_head(&h.ctx).await?;
    assert_eq!(head_before, None, "a new store has an empty log");
    h.fake.add_image(IMAGE);
    h.apply(Kind::Container, "web", json!({"image": IMAGE})).await?;
    let head = intents::audit_head(&h.ctx).await?.context("the apply is audited")?;
    // An action of the running controller, still in flight: not the previous run's.
    h.store
        .append(
            AuditEntry::new(
                WriteContext::controller(),
                "docker.container.create",
                AuditOutcome::Pending,
            )
            .target("Container", Some("default".into()), "web")
            .message("create container berth_default_web"),
        )
        .await?;
    assert!(intents::interrupted(&h.ctx, head).await?.is_empty());
    assert_eq!(intents::settle_interrupted(&h.ctx, head).await?, 0);
    Ok(())
}

#[tokio::test]
async fn an_image_pull_shows_bytes_and_layers_in_status_while_it_runs_and_clears_them_after()
-> Result<()> {
    use berth_controller::docker::fake::FAKE_LAYER_BYTES;
    use berth_controller::store::WatchQuery;

    let h = harness()?;
    h.fake.add_registry_image("127.0.0.1:5000/app:1");
    h.apply(Kind::Image, "app", json!({"reference": "127.0.0.1:5000/app:1"})).await?;
    let mut watch = h.store.watch(WatchQuery::after(h.store.revision()))?;
    image_pass(&h, "app").await?;

    let mut seen = Vec::new();
    while let Ok(Ok(event)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), watch.next()).await
    {
        if let Some(pull) = event.object.status.get("pull") {
            seen.push(serde_json::from_value::<berth_schemas::image::PullProgress>(pull.clone())?);
        }
    }
    let last = seen.last().context("progress was written while pulling")?;
    assert_eq!(
        *last,
        berth_schemas::image::PullProgress {
            current_bytes: FAKE_LAYER_BYTES,
            total_bytes: FAKE_LAYER_BYTES,
            layers_done: 1,
            layers_total: 1,
        },
        "all progress seen: {seen:?}"
    );
    assert!(
        seen.iter().any(|p| p.current_bytes > 0 && p.current_bytes < p.total_bytes),
        "a partial download was reported: {seen:?}"
    );
    let status = image_status(&h, "app").await?;
    assert_eq!(status.pull, None, "cleared once the pull is over");
    assert!(status.pulled_at.is_some());
    Ok(())
}
