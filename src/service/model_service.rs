//! ModelService (admin): the model packs the workers loaded (with the execution provider each
//! session really got, and why one is unhealthy), and the analysis jobs with their attempts
//! and last errors.

use super::lifecycle::JobState;
use super::proto::model_service_server::ModelService;
use super::proto::{self, *};
use super::state::State;
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
                    "state {text:?} is not one of {}",
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
}
