//! Signing a read, and amending one: the one path of the gRPC API and the web app.
//!
//! A first signature needs the claim ([`crate::store::Store::sign`]); an amendment needs a
//! signed item and the signing time of the read it was written against, so that of two
//! amendments written at once only one wins ([`crate::store::Store::amend`]). Either way the
//! QA comparison of draft and read is computed once, here (labelling is CPU work: off the async
//! threads), the SR is built and queued for every peer that takes results in the same
//! transaction as the read (an amendment's SR names the SR it replaces), and watchers are told.

use super::convert::{millis, study_pair, timestamp};
use super::proto::{DeviceAgreement, FinalRead, FindingAgreement};
use super::results::{final_results, predecessor, ReportSource};
use super::state::State;
use crate::store::WorkItemRow;
use prost::Message;
use std::sync::Arc;
use tonic::Status;

/// What the radiologist signs: the text and their agreement per finding and device.
pub struct Read {
    pub text: String,
    pub findings: Vec<FindingAgreement>,
    pub devices: Vec<DeviceAgreement>,
}

/// A first signature, or an amendment of the current read.
pub enum Signing {
    First,
    Amendment {
        reason: String,
        /// The sign time (ms) of the read the amendment was written against.
        replaces: i64,
    },
}

/// Signs (or amends) the read of study `uid` as `who`; the work item as it now is.
pub async fn sign(
    state: Arc<State>,
    uid: &str,
    who: &str,
    read: Read,
    signing: Signing,
) -> Result<WorkItemRow, Status> {
    if read.text.trim().is_empty() {
        return Err(Status::invalid_argument("the read's text is empty"));
    }
    if let Signing::Amendment { reason, .. } = &signing {
        if reason.trim().is_empty() {
            return Err(Status::invalid_argument(
                "say why the read is amended (the reason is kept with it)",
            ));
        }
    }
    let row = {
        let (state, uid, who) = (state.clone(), uid.to_string(), who.to_string());
        tokio::task::spawn_blocking(move || sign_now(&state, &uid, &who, read, signing))
            .await
            .map_err(|e| Status::internal(format!("signing: {e}")))??
    };
    state.study_changed(uid, false);
    Ok(row)
}

fn sign_now(
    state: &State,
    uid: &str,
    who: &str,
    read: Read,
    signing: Signing,
) -> Result<WorkItemRow, Status> {
    let store = state.store.as_ref();
    let current = store.work_item(uid).map_err(super::convert::store_status)?;
    // An amendment counts on from the read it replaces, and is signed after it even should
    // the clock have stepped back.
    let now = crate::store::now_ms();
    let (amendment, reason, signed_at) = match &signing {
        Signing::First => (0, String::new(), now),
        Signing::Amendment { reason, replaces } => {
            let previous = current
                .final_read
                .as_deref()
                .map(FinalRead::decode)
                .transpose()
                .map_err(|e| Status::internal(format!("the stored read: {e}")))?
                .ok_or_else(|| {
                    Status::failed_precondition("only a signed read can be amended: sign it first")
                })?;
            (
                previous.amendment + 1,
                reason.trim().to_string(),
                now.max(replaces + 1),
            )
        }
    };
    let message = FinalRead {
        text: read.text,
        radiologist: who.to_string(),
        sign_time: Some(timestamp(signed_at)),
        findings: read.findings,
        devices: read.devices,
        amendment,
        amendment_reason: reason,
    };
    let pair = study_pair(&current, &message)?;
    let comparison = crate::qa::compare_study(&state.labeler, &pair, None)
        .map_err(|e| Status::internal(e.to_string()))?;
    let comparison =
        serde_json::to_string(&comparison).map_err(|e| Status::internal(e.to_string()))?;
    let results = match &current.report_json {
        Some(json) if !state.result_peers.is_empty() => {
            let source: ReportSource = serde_json::from_str(json)
                .map_err(|e| Status::internal(format!("the work item's report: {e}")))?;
            let replaces = match signing {
                Signing::First => None,
                Signing::Amendment { .. } => predecessor(store, uid)
                    .map_err(|e| Status::internal(format!("the SR being amended: {e}")))?,
            };
            let signed = crate::draft::FinalRead {
                text: message.text.clone(),
                radiologist: who.to_string(),
                organization: state.config.organization.clone(),
                signed_at: chrono::Utc::now().format("%Y%m%d%H%M%S").to_string(),
                replaces,
            };
            final_results(store, &state.result_peers, &source, &signed)
                .map_err(|e| Status::internal(format!("the signed SR: {e}")))?
        }
        _ => vec![],
    };
    let bytes = message.encode_to_vec();
    match signing {
        Signing::First => store.sign(uid, who, signed_at, &bytes, &comparison, &results),
        Signing::Amendment { replaces, .. } => {
            store.amend(uid, replaces, signed_at, &bytes, &comparison, &results)
        }
    }
    .map_err(super::convert::store_status)
}

/// The sign time of a stored read, as an amendment names it.
pub fn sign_time_ms(read: &FinalRead) -> i64 {
    read.sign_time.as_ref().map(millis).unwrap_or_default()
}
