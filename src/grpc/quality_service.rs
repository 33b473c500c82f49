//! QualityService: QA staff compare the model's drafts with the signed reads, one study at a
//! time or over a period (sensitivity, PPV, F1 and kappa per observation, with intervals).
//!
//! The comparison of each signed study was computed when it was signed (see
//! [`crate::app::reading`]) and is read back here; a study signed by an earlier version
//! without one is compared now.

use super::auth::caller;
use super::convert::{agreement_message, comparison_message, millis, uid_of};
use super::proto::quality_service_server::QualityService;
use super::proto::*;
use crate::app::quality::comparison;
use crate::app::state::State;
use crate::app::Error;
use crate::qa::{AgreementBuilder, UncertainPolicy};
use std::sync::Arc;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct QualityApi(pub Arc<State>);

#[tonic::async_trait]
impl QualityService for QualityApi {
    async fn get_study_comparison(
        &self,
        request: Request<GetStudyComparisonRequest>,
    ) -> Result<Response<StudyComparison>, Status> {
        let state = self.0.clone();
        let caller = caller(&request)?;
        let uid = uid_of(&request.get_ref().name, "studies")?;
        let compared = {
            let (state, uid) = (state.clone(), uid.clone());
            tokio::task::spawn_blocking(move || -> Result<_, Error> {
                let row = state.store.work_item(&uid)?;
                comparison(&state, &row)
            })
            .await
            .map_err(|e| Error::internal("comparing", e))??
        }
        .ok_or_else(|| {
            Status::failed_precondition(
                "the study is not signed yet: no final read to compare with",
            )
        })?;
        state
            .audit(&caller, "GetStudyComparison", &format!("studies/{uid}"))
            .await?;
        Ok(Response::new(comparison_message(&uid, &compared)))
    }

    async fn get_agreement(
        &self,
        request: Request<GetAgreementRequest>,
    ) -> Result<Response<Agreement>, Status> {
        let state = self.0.clone();
        let caller = caller(&request)?;
        let r = request.into_inner();
        let agreement = {
            let state = state.clone();
            tokio::task::spawn_blocking(move || -> Result<_, Error> {
                let rows = state.store.signed_items(
                    r.start_time.as_ref().map(millis),
                    r.end_time.as_ref().map(millis),
                    &r.model_version,
                )?;
                let mut builder = AgreementBuilder::new("request", UncertainPolicy::Positive);
                for row in &rows {
                    if let Some(c) = comparison(&state, row)? {
                        builder.add(&c);
                    }
                }
                Ok(builder.finish())
            })
            .await
            .map_err(|e| Error::internal("the agreement", e))??
        };
        state
            .audit(
                &caller,
                "GetAgreement",
                &format!("{} studies", agreement.studies),
            )
            .await?;
        Ok(Response::new(agreement_message(&agreement)))
    }
}
