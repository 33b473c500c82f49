//! ModelService (admin): the model packs the workers loaded (with the execution provider each
//! session really got, and why one is unhealthy), and the analysis jobs with their attempts
//! and last errors, and the results outbox (SRs for DICOM peers).

use super::convert::timestamp;
use super::proto::model_service_server::ModelService;
use super::proto::{self, *};
use crate::app::state::State;
use crate::store::lifecycle::{JobState, OutboxState};
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct ModelApi(pub Arc<State>);

#[tonic::async_trait]
impl ModelService for ModelApi {
    async fn list_models(
        &self,
        _request: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let packs = self
            .0
            .models
            .read()
            .map_err(|_| Status::internal("model table"))?
            .iter()
            .map(|m| proto::ModelPack {
                name: m.name.clone(),
                task: m.task.clone(),
                version: m.version.clone(),
                test_model: m.test_model,
                provider: m.provider.clone(),
                healthy: m.healthy,
                error: m.error.clone(),
            })
            .collect();
        Ok(Response::new(ListModelsResponse { packs }))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let wanted = &request.get_ref().state;
        let state = match wanted.as_str() {
            "" => None,
            text => Some(JobState::parse(text).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "state {} is not one of {}",
                    crate::excerpt::excerpt(text),
                    JobState::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?),
        };
        let jobs = self
            .0
            .store_call(move |s| s.jobs(state))
            .await?
            .into_iter()
            .map(|j| Job {
                study: format!("studies/{}", j.study_instance_uid),
                state: j.state.as_str().into(),
                attempts: j.attempts,
                last_error: j.last_error,
            })
            .collect();
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn list_results(
        &self,
        request: Request<ListResultsRequest>,
    ) -> Result<Response<ListResultsResponse>, Status> {
        let limit = match request.get_ref().limit {
            0 => 100,
            n => i64::from(n.min(10_000)),
        };
        let results = self
            .0
            .store_call(move |s| s.outbox(limit))
            .await?
            .into_iter()
            .map(|r| proto::OutgoingResult {
                study: format!("studies/{}", r.result.study_instance_uid),
                sop_instance_uid: r.result.sop_instance_uid,
                kind: r.result.kind.as_str().into(),
                peer: r.result.peer,
                state: r.state.as_str().into(),
                attempts: r.attempts,
                last_error: r.last_error,
                create_time: Some(timestamp(r.created_at)),
                next_attempt_time: (r.state == OutboxState::Pending)
                    .then(|| timestamp(r.next_attempt_at)),
                sent_time: r.sent_at.map(timestamp),
            })
            .collect();
        Ok(Response::new(ListResultsResponse { results }))
    }
}
