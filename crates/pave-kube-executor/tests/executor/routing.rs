//! `RoutingExecutor`: each task goes to the executor it names.

use crate::common::{Fx, config};
use pave_executor::{Executor, ExecutorError, ExecutorEvent, NoopExecutor, ProcessRef};
use pave_kube_executor::RoutingExecutor;
use std::sync::Arc;

#[tokio::test]
async fn tasks_go_to_the_executor_they_name() {
    let mut fx = Fx::new(config("route")).await;
    let (tx, mut noop_events) = tokio::sync::mpsc::unbounded_channel();
    let noop: Arc<dyn Executor> = Arc::new(NoopExecutor::new(tx));
    let kube: Arc<dyn Executor> = fx.exec.clone();
    let routing = RoutingExecutor::new("noop", vec![noop.clone(), kube]).expect("routing");
    assert!(
        routing.capacity().gpu_count() >= 4,
        "the cluster's GPUs count"
    );

    let light = fx.request("light", 1);
    let h = routing.start(light).await.expect("start light");
    assert!(matches!(h.process, ProcessRef::Noop));
    assert!(matches!(
        noop_events.recv().await,
        Some(ExecutorEvent::Finished { .. })
    ));

    let mut heavy = fx.request("heavy", 1);
    heavy.placement.executor = Some("kubernetes".into());
    let h = routing.start(heavy).await.expect("start heavy");
    assert!(matches!(h.process, ProcessRef::Pod(_)));
    assert!(matches!(fx.next().await, ExecutorEvent::Finished { .. }));

    let mut odd = fx.request("odd", 1);
    odd.placement.executor = Some("celery".into());
    let err = routing.start(odd).await.expect_err("unknown executor");
    assert!(matches!(err, ExecutorError::InvalidRequest { .. }));
    assert!(err.to_string().contains("`celery`"), "{err}");

    let msg = RoutingExecutor::new("kubernetes", vec![noop])
        .err()
        .unwrap_or_default();
    assert!(msg.contains("`kubernetes` is not configured"), "{msg}");
}
