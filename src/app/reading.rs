//! Reading a study: claim and release its work item, sign the read, amend it. The one path of
//! the gRPC API and the reading room.
//!
//! Claim and release are the store's conditional updates ([`crate::store::lifecycle`]). A first
//! signature needs the claim ([`crate::store::Worklist::sign`]); an amendment needs a signed item
//! and the signing time of the read it was written against, so that of two amendments written
//! at once only one wins ([`crate::store::Worklist::amend`]). Either way the QA comparison of draft
//! and read is computed once, here (labelling is CPU work: off the async threads), the SR is
//! built and queued for every peer that takes results in the same transaction as the read (an
//! amendment's SR names the SR it replaces), and watchers are told. Every operation is audited
//! as the caller's.

use super::quality::study_pair;
use super::results::{final_results, predecessor, ReportSource};
use super::state::State;
use super::{Caller, Error};
use crate::store::documents::{DeviceAgreement, FindingAgreement, SignedRead, WorkItemContent};
use crate::store::ResultBatch;
use crate::store::{Store, StoreError, WorkItemRow};
use std::sync::Arc;

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
        /// The sign time (ms) of the read the amendment was written against; None: the read
        /// as it is now (the caller accepts to replace whatever is there; the replaced read is
        /// kept all the same).
        replaces: Option<i64>,
    },
}

/// What the radiologist said of one device: "agree", or their own verdict.
pub struct DeviceSaid<'a> {
    pub device: &'a str,
    pub said: &'a str,
}

/// The work item of study `uid`, read by `caller` (audited as `action`).
pub async fn work_item(
    state: &State,
    caller: &Caller,
    uid: &str,
    action: &str,
) -> Result<WorkItemRow, Error> {
    let row = state.work_item(uid).await?;
    state
        .audit(caller, action, &format!("workItems/{uid}"))
        .await?;
    Ok(row)
}

/// A claim change: the store's conditional update for (study, radiologist).
type ClaimChange = fn(&dyn Store, &str, &str) -> Result<WorkItemRow, StoreError>;

/// UNCLAIMED -> CLAIMED by the caller (already theirs: unchanged).
pub async fn claim(
    state: &State,
    caller: &Caller,
    uid: &str,
    action: &str,
) -> Result<WorkItemRow, Error> {
    change_claim(state, caller, uid, action, |s, uid, who| s.claim(uid, who)).await
}

/// CLAIMED by the caller -> UNCLAIMED.
pub async fn release(
    state: &State,
    caller: &Caller,
    uid: &str,
    action: &str,
) -> Result<WorkItemRow, Error> {
    change_claim(state, caller, uid, action, |s, uid, who| {
        s.release(uid, who)
    })
    .await
}

/// Claims or releases study `uid` for the caller (`change`), audited as `action`.
async fn change_claim(
    state: &State,
    caller: &Caller,
    uid: &str,
    action: &str,
    change: ClaimChange,
) -> Result<WorkItemRow, Error> {
    let row = {
        let (uid, who) = (uid.to_string(), caller.name.clone());
        state.store_call(move |s| change(s, &uid, &who)).await?
    };
    // Watchers learn of the change even should the audit fail after it.
    state.study_changed(uid, false);
    state
        .audit(caller, action, &format!("workItems/{uid}"))
        .await?;
    Ok(row)
}

/// The device agreements of a read: a device the radiologist agreed with (or gave the draft's
/// own verdict) keeps the draft's verdict; a device the draft did not check is left out.
pub fn device_agreements(content: &WorkItemContent, said: &[DeviceSaid]) -> Vec<DeviceAgreement> {
    said.iter()
        .filter_map(|s| {
            let draft = content
                .devices
                .iter()
                .find(|d| crate::store::documents::device_name(d.device) == s.device)?;
            let drafted = crate::store::documents::verdict_name(draft.verdict);
            let agrees = s.said == "agree" || s.said == drafted;
            Some(DeviceAgreement {
                device: s.device.to_string(),
                verdict: if agrees { drafted } else { s.said.to_string() },
                agrees,
            })
        })
        .collect()
}

/// Signs (or amends) the read of study `uid` as the caller, audited as `action`; the work item
/// as it now is.
pub async fn sign(
    state: Arc<State>,
    caller: &Caller,
    uid: &str,
    read: Read,
    signing: Signing,
    action: &str,
) -> Result<WorkItemRow, Error> {
    if read.text.trim().is_empty() {
        return Err(Error::Invalid("the read's text is empty".into()));
    }
    if let Signing::Amendment { reason, .. } = &signing {
        if reason.trim().is_empty() {
            return Err(Error::Invalid(
                "say why the read is amended (the reason is kept with it)".into(),
            ));
        }
    }
    let row = {
        let (state, uid, who) = (state.clone(), uid.to_string(), caller.name.clone());
        tokio::task::spawn_blocking(move || sign_now(&state, &uid, &who, read, signing))
            .await
            .map_err(|e| Error::internal("signing", e))??
    };
    // The read is committed: watchers learn of it even should the audit fail after it.
    state.study_changed(uid, false);
    state
        .audit(caller, action, &format!("workItems/{uid}"))
        .await?;
    Ok(row)
}

fn sign_now(
    state: &State,
    uid: &str,
    who: &str,
    read: Read,
    signing: Signing,
) -> Result<WorkItemRow, Error> {
    let store = state.store.as_ref();
    let current = store.work_item(uid)?;
    // An amendment counts on from the read it replaces, and is signed after it even should
    // the clock have stepped back.
    let now = crate::store::now_ms();
    let (amendment, reason, signed_at, replaces) = match &signing {
        Signing::First => (0, String::new(), now, 0),
        Signing::Amendment { reason, replaces } => {
            let previous = current.final_read.as_ref().ok_or_else(|| {
                Error::Precondition("only a signed read can be amended: sign it first".into())
            })?;
            let replaces = replaces.unwrap_or(previous.signed_at);
            (
                previous.amendment + 1,
                reason.trim().to_string(),
                now.max(replaces + 1),
                replaces,
            )
        }
    };
    let signed = SignedRead {
        text: read.text,
        radiologist: who.to_string(),
        signed_at,
        findings: read.findings,
        devices: read.devices,
        amendment,
        amendment_reason: reason,
    };
    let comparison = crate::qa::compare_study(&state.labeler, &study_pair(&current, &signed), None)
        .map_err(|e| Error::internal("comparing the read with the draft", e))?;
    let comparison = serde_json::to_string(&comparison)
        .map_err(|e| Error::internal("the read's comparison", e))?;
    let results = match &current.report_json {
        Some(json) => {
            let source: ReportSource = serde_json::from_str(json)
                .map_err(|e| Error::internal("the work item's report", e))?;
            let amended = match signing {
                Signing::First => None,
                Signing::Amendment { .. } => predecessor(store, uid)
                    .map_err(|e| Error::internal("the SR being amended", e))?,
            };
            let final_read = crate::draft::FinalRead {
                text: signed.text.clone(),
                radiologist: who.to_string(),
                organization: state.config.organization.clone(),
                signed_at: chrono::Utc::now().format("%Y%m%d%H%M%S").to_string(),
                replaces: amended,
            };
            final_results(store, &state.result_peers, &source, &final_read)
                .map_err(|e| Error::internal("the signed SR", e))?
        }
        None => ResultBatch::default(),
    };
    Ok(match signing {
        Signing::First => store.sign(uid, who, signed_at, &signed, &comparison, &results),
        Signing::Amendment { .. } => {
            store.amend(uid, replaces, signed_at, &signed, &comparison, &results)
        }
    }?)
}
