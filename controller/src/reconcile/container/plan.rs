//! The container planner: a pure function from what a `Container` resource asks for and what
//! Docker has to the steps that close the gap.
//!
//! # Rules
//!
//! - Only containers carrying the resource's ownership labels are ever in a plan. A container
//!   without them that holds the wanted name is reported ([`Step::ReportConflict`]), never
//!   touched.
//! - Deletion: every owned container is stopped (grace period honoured) and removed, then the
//!   finalizer is dropped.
//! - Containers of an older incarnation of the resource (another uid) and duplicates of this one
//!   (two containers for one uid, left by a crash) are stopped and removed; the best one (right
//!   hash, running, newest) is kept.
//! - The kept container's spec hash equals the desired one: only its state is fixed (start or
//!   stop per `desiredState`). An exited container is started for `Running` only if it was
//!   stopped (out of band or by berth); one whose process exited on its own is reported
//!   ([`Step::ReportExited`]) and left to Docker's restart policy. A different hash, a different name or a dead container: replace
//!   (pull first when needed, then stop with grace, remove, create, start).
//! - Nothing is created or started while a dependency is not Ready; nothing running is torn down
//!   for that either.

use std::time::Duration;

use berth_schemas::{ContainerState, DesiredState, PullPolicy};

/// What the resource asks for, reduced to what the plan depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The resource's uid (its incarnation).
    pub uid: String,
    /// The Docker container name to use (see [`crate::labels::container_name`]).
    pub name: String,
    /// [`crate::labels::spec_hash`] of the spec with the image as it is on the host now;
    /// `None` when the image is not on the host (so the hash cannot be known yet).
    pub spec_hash: Option<String>,
    /// The spec's `imagePullPolicy`.
    pub pull_policy: PullPolicy,
    /// Running or Stopped.
    pub desired_state: DesiredState,
    /// The stop grace period.
    pub grace: Duration,
    /// Whether the resource is being deleted (`deletionTimestamp` set).
    pub deleting: bool,
    /// Whether the resource still carries berth's finalizer.
    pub holds_finalizer: bool,
    /// The `dependsOn` resources that are not Ready yet, by key; empty when all are.
    pub waiting_for: Vec<String>,
}

/// One Docker container carrying the resource's ownership labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    /// The container id.
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// Its `dev.berth.uid` label.
    pub uid: Option<String>,
    /// Its `dev.berth.spec-hash` label.
    pub spec_hash: Option<String>,
    /// Its state.
    pub state: ContainerState,
    /// When it was created (Unix seconds), to keep the newest of duplicates.
    pub created: i64,
    /// For an exited container: its process ended on its own (it was not stopped), so it is
    /// left to the restart policy (see [`crate::reconcile::exits`]).
    pub exited_on_its_own: bool,
}

/// A container that holds the wanted name but is not the resource's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameHolder {
    /// The container id.
    pub id: String,
}

/// What Docker has for the resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// Every container whose labels name this resource (kind, namespace, name), any uid.
    pub containers: Vec<ObservedContainer>,
    /// A container holding the wanted name that is not among `containers`.
    pub name_holder: Option<NameHolder>,
}

/// Which container a step acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An existing container, by id.
    Existing(String),
    /// The container created by the [`Step::Create`] earlier in the same plan.
    New,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Pull the spec's image (with the configured credentials).
    PullImage,
    /// Create the container under the wanted name, labelled with the hash of the spec and the
    /// image as it is after any pull in this plan.
    Create,
    /// Start a container.
    Start(Target),
    /// Stop a container, giving its process `grace` to exit before it is killed.
    Stop {
        /// The container.
        id: String,
        /// The stop grace period.
        grace: Duration,
    },
    /// Remove a (stopped) container, forcibly should it have started again meanwhile.
    Remove {
        /// The container.
        id: String,
    },
    /// Drop the `berth.dev/docker-cleanup` finalizer: nothing of the resource is left.
    DropFinalizer,
    /// The image is not on the host and the pull policy is `Never`.
    ReportImageMissing,
    /// A container berth does not own holds the wanted name; report it and leave it alone.
    ReportConflict {
        /// The foreign container.
        holder_id: String,
    },
    /// The container's process exited on its own and its restart policy leaves it exited:
    /// crash restarts are Docker's job, so berth reports it and does not start it.
    ReportExited {
        /// The container.
        id: String,
    },
    /// Some `dependsOn` resources are not Ready yet.
    WaitForDependencies {
        /// Their keys.
        waiting_for: Vec<String>,
    },
    /// The image had to be pulled before the plan could tell whether the existing container
    /// is current: plan again after the steps before this one.
    Replan,
}

impl Step {
    /// Whether the step changes anything in Docker or the store.
    pub fn is_mutating(&self) -> bool {
        matches!(
            self,
            Step::PullImage
                | Step::Create
                | Step::Start(_)
                | Step::Stop { .. }
                | Step::Remove { .. }
                | Step::DropFinalizer
        )
    }
}

/// Whether a plan changes nothing (it may still report a conflict or a wait).
pub fn is_quiet(plan: &[Step]) -> bool {
    !plan.iter().any(Step::is_mutating)
}

fn is_up(state: ContainerState) -> bool {
    matches!(state, ContainerState::Running | ContainerState::Restarting | ContainerState::Paused)
}

/// Stops (when up) and removes a container.
fn tear_down(c: &ObservedContainer, grace: Duration, steps: &mut Vec<Step>) {
    if c.state == ContainerState::Removing {
        return;
    }
    if is_up(c.state) {
        steps.push(Step::Stop { id: c.id.clone(), grace });
    }
    steps.push(Step::Remove { id: c.id.clone() });
}

fn is_current(c: &ObservedContainer, d: &Desired) -> bool {
    d.spec_hash.is_some()
        && c.spec_hash == d.spec_hash
        && c.name == d.name
        && !matches!(c.state, ContainerState::Dead | ContainerState::Removing)
}

/// Plans the steps that take `observed` to `desired`. An empty plan means nothing to do.
///
/// # Guarantees
///
/// Every step acts on a container in `observed.containers` or on the one the plan creates;
/// `observed.name_holder` is never acted on. A `Create` comes only after the removal of any of
/// the resource's own containers holding the wanted name.
pub fn plan(desired: &Desired, observed: &Observed) -> Vec<Step> {
    let d = desired;
    let mut steps = Vec::new();
    let mut containers: Vec<&ObservedContainer> = observed.containers.iter().collect();
    containers.sort_by(|a, b| a.id.cmp(&b.id));

    if d.deleting {
        for c in &containers {
            tear_down(c, d.grace, &mut steps);
        }
        if d.holds_finalizer && containers.iter().all(|c| c.state != ContainerState::Removing) {
            steps.push(Step::DropFinalizer);
        }
        return steps;
    }

    let (mut mine, stale): (Vec<_>, Vec<_>) =
        containers.into_iter().partition(|c| c.uid.as_deref() == Some(d.uid.as_str()));
    for c in &stale {
        tear_down(c, d.grace, &mut steps);
    }
    // Keep the best of this incarnation's containers: current, then up, then newest.
    mine.sort_by_key(|c| {
        (!is_current(c, d), !is_up(c.state), std::cmp::Reverse(c.created), c.id.clone())
    });
    let keeper = if mine.is_empty() { None } else { Some(mine.remove(0)) };
    for c in &mine {
        tear_down(c, d.grace, &mut steps);
    }

    match keeper {
        Some(k) if k.state == ContainerState::Removing => {
            // Docker is removing it; its destroy event brings the key back.
        }
        Some(k) if is_current(k, d) => match (d.desired_state, k.state) {
            (DesiredState::Running, ContainerState::Running | ContainerState::Restarting) => {}
            (DesiredState::Running, ContainerState::Exited) if k.exited_on_its_own => {
                steps.push(Step::ReportExited { id: k.id.clone() });
            }
            (DesiredState::Running, state) => {
                if !d.waiting_for.is_empty() {
                    steps.push(Step::WaitForDependencies { waiting_for: d.waiting_for.clone() });
                } else {
                    if state == ContainerState::Paused {
                        steps.push(Step::Stop { id: k.id.clone(), grace: d.grace });
                    }
                    steps.push(Step::Start(Target::Existing(k.id.clone())));
                }
            }
            (DesiredState::Stopped, state) if is_up(state) => {
                steps.push(Step::Stop { id: k.id.clone(), grace: d.grace });
            }
            (DesiredState::Stopped, _) => {}
        },
        keeper => {
            let image_on_host = d.spec_hash.is_some();
            if !image_on_host && d.pull_policy == PullPolicy::Never {
                steps.push(Step::ReportImageMissing);
                return steps;
            }
            if !d.waiting_for.is_empty() {
                steps.push(Step::WaitForDependencies { waiting_for: d.waiting_for.clone() });
                return steps;
            }
            if let Some(holder) = &observed.name_holder {
                steps.push(Step::ReportConflict { holder_id: holder.id.clone() });
                return steps;
            }
            if !image_on_host || d.pull_policy == PullPolicy::Always {
                steps.push(Step::PullImage);
            }
            if !image_on_host && keeper.is_some() {
                // Whether the kept container is current depends on the image being pulled.
                steps.push(Step::Replan);
                return steps;
            }
            if let Some(k) = keeper {
                tear_down(k, d.grace, &mut steps);
            }
            steps.push(Step::Create);
            if d.desired_state == DesiredState::Running {
                steps.push(Step::Start(Target::New));
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const GRACE: Duration = Duration::from_secs(10);

    fn desired() -> Desired {
        Desired {
            uid: "uid-1".into(),
            name: "berth_default_web".into(),
            spec_hash: Some("h1".into()),
            pull_policy: PullPolicy::IfNotPresent,
            desired_state: DesiredState::Running,
            grace: GRACE,
            deleting: false,
            holds_finalizer: true,
            waiting_for: Vec::new(),
        }
    }

    fn ctr(id: &str, hash: &str, state: ContainerState) -> ObservedContainer {
        ObservedContainer {
            id: id.into(),
            name: "berth_default_web".into(),
            uid: Some("uid-1".into()),
            spec_hash: Some(hash.into()),
            state,
            created: 100,
            exited_on_its_own: false,
        }
    }

    fn observed(containers: Vec<ObservedContainer>) -> Observed {
        Observed { containers, name_holder: None }
    }

    fn stop(id: &str) -> Step {
        Step::Stop { id: id.into(), grace: GRACE }
    }

    fn remove(id: &str) -> Step {
        Step::Remove { id: id.into() }
    }

    fn start(id: &str) -> Step {
        Step::Start(Target::Existing(id.into()))
    }

    #[test]
    fn a_running_container_with_the_desired_hash_needs_nothing() {
        let o = observed(vec![ctr("a", "h1", ContainerState::Running)]);
        assert_eq!(plan(&desired(), &o), vec![]);
    }

    #[test]
    fn a_missing_container_is_created_and_started() {
        assert_eq!(
            plan(&desired(), &Observed::default()),
            vec![Step::Create, Step::Start(Target::New)]
        );
    }

    #[test]
    fn a_missing_image_is_pulled_before_the_container_is_created() {
        let d = Desired { spec_hash: None, ..desired() };
        assert_eq!(
            plan(&d, &Observed::default()),
            vec![Step::PullImage, Step::Create, Step::Start(Target::New)]
        );
    }

    #[test]
    fn a_changed_hash_replaces_the_container_pulling_first_under_pull_always() {
        let d = Desired { pull_policy: PullPolicy::Always, ..desired() };
        let o = observed(vec![ctr("a", "old", ContainerState::Running)]);
        assert_eq!(
            plan(&d, &o),
            vec![Step::PullImage, stop("a"), remove("a"), Step::Create, Step::Start(Target::New)]
        );
    }

    #[test]
    fn pull_always_does_not_pull_for_a_current_container() {
        let d = Desired { pull_policy: PullPolicy::Always, ..desired() };
        let o = observed(vec![ctr("a", "h1", ContainerState::Running)]);
        assert_eq!(plan(&d, &o), vec![]);
    }

    #[test]
    fn a_stopped_killed_or_created_container_is_started_again() {
        for state in [ContainerState::Exited, ContainerState::Created] {
            let o = observed(vec![ctr("a", "h1", state)]);
            assert_eq!(plan(&desired(), &o), vec![start("a")], "{state:?}");
        }
    }

    #[test]
    fn a_container_whose_process_exited_on_its_own_is_reported_not_restarted() {
        let mut exited = ctr("a", "h1", ContainerState::Exited);
        exited.exited_on_its_own = true;
        assert_eq!(
            plan(&desired(), &observed(vec![exited.clone()])),
            vec![Step::ReportExited { id: "a".into() }]
        );
        // A stopped one (out of band, or by berth) is started again.
        let stopped = ctr("a", "h1", ContainerState::Exited);
        assert_eq!(plan(&desired(), &observed(vec![stopped])), vec![start("a")]);
        // Desired Stopped: nothing either way.
        let d = Desired { desired_state: DesiredState::Stopped, ..desired() };
        assert_eq!(plan(&d, &observed(vec![exited.clone()])), vec![]);
        // A spec change still replaces it: the new container runs.
        let mut stale = exited;
        stale.spec_hash = Some("old".into());
        assert_eq!(
            plan(&desired(), &observed(vec![stale])),
            vec![remove("a"), Step::Create, Step::Start(Target::New)]
        );
    }

    #[test]
    fn a_paused_container_is_stopped_then_started() {
        let o = observed(vec![ctr("a", "h1", ContainerState::Paused)]);
        assert_eq!(plan(&desired(), &o), vec![stop("a"), start("a")]);
    }

    #[test]
    fn desired_stopped_stops_a_running_container_and_leaves_an_exited_one() {
        let d = Desired { desired_state: DesiredState::Stopped, ..desired() };
        let running = observed(vec![ctr("a", "h1", ContainerState::Running)]);
        assert_eq!(plan(&d, &running), vec![stop("a")]);
        let exited = observed(vec![ctr("a", "h1", ContainerState::Exited)]);
        assert_eq!(plan(&d, &exited), vec![]);
    }

    #[test]
    fn desired_stopped_creates_without_starting() {
        let d = Desired { desired_state: DesiredState::Stopped, ..desired() };
        assert_eq!(plan(&d, &Observed::default()), vec![Step::Create]);
    }

    #[test]
    fn a_foreign_container_holding_the_name_is_reported_and_left_alone() {
        let o =
            Observed { containers: vec![], name_holder: Some(NameHolder { id: "foreign".into() }) };
        assert_eq!(
            plan(&desired(), &o),
            vec![Step::ReportConflict { holder_id: "foreign".into() }]
        );
    }

    #[test]
    fn duplicates_of_one_uid_keep_the_current_running_one() {
        let mut dup = ctr("b", "h1", ContainerState::Created);
        dup.name = "other".into();
        let o = observed(vec![ctr("a", "h1", ContainerState::Running), dup]);
        assert_eq!(plan(&desired(), &o), vec![remove("b")]);
    }

    #[test]
    fn containers_of_an_older_incarnation_are_removed_before_the_new_one_is_created() {
        let mut old = ctr("old", "h0", ContainerState::Running);
        old.uid = Some("uid-0".into());
        let o = observed(vec![old]);
        assert_eq!(
            plan(&desired(), &o),
            vec![stop("old"), remove("old"), Step::Create, Step::Start(Target::New)]
        );
    }

    #[test]
    fn a_dead_container_is_replaced() {
        let o = observed(vec![ctr("a", "h1", ContainerState::Dead)]);
        assert_eq!(plan(&desired(), &o), vec![remove("a"), Step::Create, Step::Start(Target::New)]);
    }

    #[test]
    fn deletion_stops_and_removes_every_owned_container_then_drops_the_finalizer() {
        let d = Desired { deleting: true, ..desired() };
        let mut old = ctr("b", "h0", ContainerState::Exited);
        old.uid = Some("uid-0".into());
        let o = Observed {
            containers: vec![ctr("a", "h1", ContainerState::Running), old],
            name_holder: Some(NameHolder { id: "foreign".into() }),
        };
        assert_eq!(plan(&d, &o), vec![stop("a"), remove("a"), remove("b"), Step::DropFinalizer]);
    }

    #[test]
    fn nothing_is_created_or_started_while_a_dependency_is_not_ready() {
        let d = Desired { waiting_for: vec!["Container/default/db".into()], ..desired() };
        let wait = Step::WaitForDependencies { waiting_for: d.waiting_for.clone() };
        assert_eq!(plan(&d, &Observed::default()), vec![wait.clone()]);
        let exited = observed(vec![ctr("a", "h1", ContainerState::Exited)]);
        assert_eq!(plan(&d, &exited), vec![wait]);
        let running = observed(vec![ctr("a", "h1", ContainerState::Running)]);
        assert_eq!(plan(&d, &running), vec![], "a running container is not torn down");
    }

    #[test]
    fn pull_never_with_no_image_reports_it_and_touches_nothing() {
        let d = Desired { spec_hash: None, pull_policy: PullPolicy::Never, ..desired() };
        let o = observed(vec![ctr("a", "h0", ContainerState::Running)]);
        assert_eq!(plan(&d, &o), vec![Step::ReportImageMissing]);
    }

    #[test]
    fn an_image_gone_from_under_a_container_is_pulled_then_the_plan_is_redone() {
        let d = Desired { spec_hash: None, ..desired() };
        let o = observed(vec![ctr("a", "h1", ContainerState::Running)]);
        assert_eq!(plan(&d, &o), vec![Step::PullImage, Step::Replan]);
    }

    #[test]
    fn a_renamed_container_is_replaced() {
        let mut renamed = ctr("a", "h1", ContainerState::Running);
        renamed.name = "someone-renamed-it".into();
        assert_eq!(
            plan(&desired(), &observed(vec![renamed])),
            vec![stop("a"), remove("a"), Step::Create, Step::Start(Target::New)]
        );
    }

    // ---- The property: applying a plan, then planning again, yields nothing to do. ----

    /// A tiny Docker: our containers, at most one foreign one, and whether the image is there.
    #[derive(Debug, Clone)]
    struct Sim {
        ours: Vec<ObservedContainer>,
        foreign: Option<(String, String)>,
        image: bool,
        finalizer: bool,
        next_id: u32,
    }

    /// What the generated resource asks for; the spec hash follows from the simulated image.
    #[derive(Debug, Clone)]
    struct Ask {
        policy: PullPolicy,
        state: DesiredState,
        deleting: bool,
        waiting: bool,
    }

    const IMAGE_ID: &str = "sha256:img";

    fn hash_now(sim: &Sim) -> Option<String> {
        sim.image.then(|| format!("hash-{IMAGE_ID}"))
    }

    fn desired_for(ask: &Ask, sim: &Sim) -> Desired {
        Desired {
            spec_hash: hash_now(sim),
            pull_policy: ask.policy,
            desired_state: ask.state,
            deleting: ask.deleting,
            holds_finalizer: sim.finalizer,
            waiting_for: if ask.waiting { vec!["Container/default/db".into()] } else { vec![] },
            ..desired()
        }
    }

    fn observe(sim: &Sim) -> Observed {
        let name_holder = sim
            .foreign
            .as_ref()
            .filter(|(_, name)| name == "berth_default_web")
            .map(|(id, _)| NameHolder { id: id.clone() });
        Observed { containers: sim.ours.clone(), name_holder }
    }

    /// Applies a plan as Docker would, failing on anything Docker (or berth's rules) refuses.
    fn apply(sim: &mut Sim, d: &Desired, steps: &[Step]) -> Result<(), String> {
        let mut created: Option<String> = None;
        for step in steps {
            let touch = |id: &str| -> Result<usize, String> {
                if sim.foreign.as_ref().is_some_and(|(f, _)| f == id) {
                    return Err(format!("{step:?} touches a foreign container"));
                }
                sim.ours.iter().position(|c| c.id == id).ok_or(format!("{step:?}: no such id"))
            };
            match step {
                Step::PullImage => sim.image = true,
                Step::Create => {
                    let taken = sim.ours.iter().any(|c| c.name == d.name)
                        || sim.foreign.as_ref().is_some_and(|(_, n)| *n == d.name);
                    if taken {
                        return Err("create with a name in use".into());
                    }
                    let hash = hash_now(sim).ok_or("create without the image")?;
                    sim.next_id += 1;
                    let id = format!("new{}", sim.next_id);
                    sim.ours.push(ObservedContainer {
                        id: id.clone(),
                        name: d.name.clone(),
                        uid: Some(d.uid.clone()),
                        spec_hash: Some(hash),
                        state: ContainerState::Created,
                        created: 1000 + i64::from(sim.next_id),
                        exited_on_its_own: false,
                    });
                    created = Some(id);
                }
                Step::Start(target) => {
                    let id = match target {
                        Target::Existing(id) => id.clone(),
                        Target::New => created.clone().ok_or("start of an uncreated container")?,
                    };
                    let i = touch(&id)?;
                    if matches!(sim.ours[i].state, ContainerState::Paused | ContainerState::Dead) {
                        return Err(format!("cannot start a {:?} container", sim.ours[i].state));
                    }
                    sim.ours[i].state = ContainerState::Running;
                }
                Step::Stop { id, .. } => {
                    let i = touch(id)?;
                    sim.ours[i].state = ContainerState::Exited;
                    // berth stopped it: it is not an exit of its own.
                    sim.ours[i].exited_on_its_own = false;
                }
                Step::Remove { id } => {
                    let i = touch(id)?;
                    sim.ours.remove(i);
                }
                Step::DropFinalizer => {
                    if !sim.ours.is_empty() {
                        return Err("finalizer dropped with containers left".into());
                    }
                    sim.finalizer = false;
                }
                Step::Replan
                | Step::ReportImageMissing
                | Step::ReportConflict { .. }
                | Step::ReportExited { .. }
                | Step::WaitForDependencies { .. } => {}
            }
        }
        Ok(())
    }

    fn any_state() -> impl Strategy<Value = ContainerState> {
        prop_oneof![
            Just(ContainerState::Created),
            Just(ContainerState::Running),
            Just(ContainerState::Paused),
            Just(ContainerState::Restarting),
            Just(ContainerState::Exited),
            Just(ContainerState::Dead),
        ]
    }

    fn any_container() -> impl Strategy<Value = (bool, u8, bool, ContainerState, i64)> {
        // The third field: whether an exited container's process exited on its own.
        (any::<bool>(), 0u8..3, any::<bool>(), any_state(), 0i64..5)
    }

    fn any_sim() -> impl Strategy<Value = Sim> {
        (
            prop::collection::vec(any_container(), 0..4),
            prop::option::of(any::<bool>()),
            any::<bool>(),
            0usize..4,
        )
            .prop_map(|(raw, foreign, image, name_owner)| {
                // Docker names are unique: at most one container holds the wanted name.
                let foreign_holds = foreign == Some(true);
                let ours = raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, (same_uid, hash, on_its_own, state, created))| ObservedContainer {
                        id: format!("c{i}"),
                        name: if i == name_owner && !foreign_holds {
                            "berth_default_web".into()
                        } else {
                            format!("berth_default_web_{i}")
                        },
                        uid: Some(if same_uid { "uid-1" } else { "uid-0" }.into()),
                        spec_hash: match hash {
                            0 => Some(format!("hash-{IMAGE_ID}")),
                            1 => Some("stale".into()),
                            _ => None,
                        },
                        state,
                        created,
                        exited_on_its_own: on_its_own && state == ContainerState::Exited,
                    })
                    .collect();
                let foreign = foreign.map(|holds| {
                    let name = if holds { "berth_default_web" } else { "unrelated" };
                    ("foreign".to_owned(), name.to_owned())
                });
                Sim { ours, foreign, image, finalizer: true, next_id: 0 }
            })
    }

    fn any_ask() -> impl Strategy<Value = Ask> {
        (
            prop_oneof![
                Just(PullPolicy::Always),
                Just(PullPolicy::IfNotPresent),
                Just(PullPolicy::Never)
            ],
            prop_oneof![Just(DesiredState::Running), Just(DesiredState::Stopped)],
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(policy, state, deleting, waiting)| Ask {
                policy,
                state,
                deleting,
                waiting,
            })
    }

    proptest! {
        #[test]
        fn applying_a_plan_then_planning_again_yields_nothing_to_do(
            mut sim in any_sim(),
            ask in any_ask(),
        ) {
            let foreign_before = sim.foreign.clone();
            // A plan ending in Replan needs one more round; every other plan converges at once.
            for round in 0..2 {
                let d = desired_for(&ask, &sim);
                let steps = plan(&d, &observe(&sim));
                apply(&mut sim, &d, &steps).map_err(TestCaseError::fail)?;
                if steps.last() != Some(&Step::Replan) {
                    break;
                }
                prop_assert_eq!(round, 0, "a second Replan in a row");
            }
            let d = desired_for(&ask, &sim);
            let again = plan(&d, &observe(&sim));
            prop_assert!(is_quiet(&again), "second plan {:?} for {:?}", again, sim);
            prop_assert_eq!(&sim.foreign, &foreign_before);

            // A container left exited is one whose process exited on its own.
            for step in &again {
                if let Step::ReportExited { id } = step {
                    let c = sim.ours.iter().find(|c| c.id == *id);
                    prop_assert!(
                        c.is_some_and(|c| c.state == ContainerState::Exited && c.exited_on_its_own),
                        "{:?}", c
                    );
                }
            }
            // And the state is what was asked, unless something was reported instead.
            let blocked = again.iter().any(|s| !s.is_mutating());
            if ask.deleting {
                prop_assert!(sim.ours.is_empty() && !sim.finalizer);
            } else if !blocked {
                prop_assert_eq!(sim.ours.len(), 1, "exactly one container: {:?}", sim.ours);
                let c = &sim.ours[0];
                prop_assert_eq!(c.uid.as_deref(), Some("uid-1"));
                if ask.state == DesiredState::Running {
                    prop_assert!(
                        matches!(c.state, ContainerState::Running | ContainerState::Restarting),
                        "{:?}", c.state
                    );
                } else {
                    prop_assert!(!is_up(c.state));
                }
            }
        }
    }
}
