//! The DICOM objects radassist sends back into a study (IHE AI Results): which kinds there
//! are, and building any of them from a study's draft and analysis.
//!
//! - the report (TID 2000 SR, [`super::sr`]): draft, then signed, then amended;
//! - the measurement report (TID 1500 SR, [`super::measurement_report`]);
//! - the presentation state (GSPS, [`super::presentation_state`]);
//! - the summary image (Secondary Capture, [`super::summary_image`]).
//!
//! The last three are made once per analysed study (they describe the models' results, which a
//! signature does not change); the report is made again when the radiologist signs or amends.

use super::dataset::ObjectError;
use super::{
    measurement_report, presentation_state, sr, summary_image, Draft, FinalRead, ImageReference,
};
use crate::analysis::StudyAnalysis;
use crate::dicom::{DecodeError, DecodeLimits, DicomInstance};
use crate::imaging::display::{choose_voi, DisplayError, VoiChoice};
use crate::imaging::Radiograph;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// One kind of result object; its name is the one configuration and the API use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultObject {
    Report,
    Measurements,
    PresentationState,
    SummaryImage,
}

impl ResultObject {
    pub const ALL: [ResultObject; 4] = [
        ResultObject::Report,
        ResultObject::Measurements,
        ResultObject::PresentationState,
        ResultObject::SummaryImage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResultObject::Report => "report",
            ResultObject::Measurements => "measurements",
            ResultObject::PresentationState => "presentation-state",
            ResultObject::SummaryImage => "summary-image",
        }
    }

    pub fn parse(name: &str) -> Option<ResultObject> {
        ResultObject::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// Its SOP class.
    pub fn sop_class_uid(self) -> &'static str {
        match self {
            ResultObject::Report | ResultObject::Measurements => sr::COMPREHENSIVE_SR,
            ResultObject::PresentationState => {
                presentation_state::GRAYSCALE_SOFTCOPY_PRESENTATION_STATE
            }
            ResultObject::SummaryImage => summary_image::SECONDARY_CAPTURE,
        }
    }
}

/// Why a result object could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("decoding the film for the {object}: {source}")]
    Decode {
        object: &'static str,
        #[source]
        source: Box<DecodeError>,
    },
    #[error("the film's window for the {object}: {source}")]
    Window {
        object: &'static str,
        #[source]
        source: DisplayError,
    },
}

/// What the objects are made of: the draft (and the signed read, for the report), the analysis,
/// the film as stored and the priors compared.
pub struct StudyResults<'a> {
    pub draft: &'a Draft,
    pub signed: Option<&'a FinalRead>,
    pub analysis: &'a StudyAnalysis,
    pub source: &'a DicomInstance,
    /// The film already decoded (None: decoded from `source` when an object needs its pixels).
    pub film: Option<&'a Radiograph>,
    pub priors: &'a [ImageReference],
}

/// Builds the `object` of a study.
pub fn build(
    object: ResultObject,
    study: &StudyResults,
    limits: &DecodeLimits,
) -> Result<dicom_object::DefaultDicomObject, BuildError> {
    let name = object.as_str();
    let film = || {
        let radiograph = match study.film {
            Some(film) => Cow::Borrowed(film),
            None => Cow::Owned(crate::dicom::decode_instance(study.source, limits).map_err(
                |source| BuildError::Decode {
                    object: name,
                    source: Box::new(source),
                },
            )?),
        };
        let voi =
            choose_voi(&radiograph, &VoiChoice::Default).map_err(|source| BuildError::Window {
                object: name,
                source,
            })?;
        Ok::<_, BuildError>((radiograph, voi))
    };
    Ok(match object {
        ResultObject::Report => sr::build(study.draft, study.signed, study.source, study.priors)?,
        ResultObject::Measurements => measurement_report::build(study.analysis, study.source)?,
        ResultObject::PresentationState => {
            let (radiograph, voi) = film()?;
            presentation_state::build(study.analysis, study.source, &radiograph, &voi)?
        }
        ResultObject::SummaryImage => {
            let (radiograph, voi) = film()?;
            summary_image::build(study.analysis, study.source, &radiograph, &voi)?
        }
    })
}
