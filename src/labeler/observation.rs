//! The vocabulary: the 14 CheXpert observations, as the enum every label, comparison and
//! agreement table is keyed by, with the one mapping to and from their CheXpert names (which
//! is also how they are written in JSON).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Observation {
    NoFinding,
    EnlargedCardiomediastinum,
    Cardiomegaly,
    LungLesion,
    LungOpacity,
    Edema,
    Consolidation,
    Pneumonia,
    Atelectasis,
    Pneumothorax,
    PleuralEffusion,
    PleuralOther,
    Fracture,
    SupportDevices,
}

impl Observation {
    /// All 14, in the CheXpert order.
    pub const ALL: [Observation; 14] = [
        Observation::NoFinding,
        Observation::EnlargedCardiomediastinum,
        Observation::Cardiomegaly,
        Observation::LungLesion,
        Observation::LungOpacity,
        Observation::Edema,
        Observation::Consolidation,
        Observation::Pneumonia,
        Observation::Atelectasis,
        Observation::Pneumothorax,
        Observation::PleuralEffusion,
        Observation::PleuralOther,
        Observation::Fracture,
        Observation::SupportDevices,
    ];

    /// The CheXpert name ("Pleural Effusion").
    pub const fn name(self) -> &'static str {
        match self {
            Observation::NoFinding => "No Finding",
            Observation::EnlargedCardiomediastinum => "Enlarged Cardiomediastinum",
            Observation::Cardiomegaly => "Cardiomegaly",
            Observation::LungLesion => "Lung Lesion",
            Observation::LungOpacity => "Lung Opacity",
            Observation::Edema => "Edema",
            Observation::Consolidation => "Consolidation",
            Observation::Pneumonia => "Pneumonia",
            Observation::Atelectasis => "Atelectasis",
            Observation::Pneumothorax => "Pneumothorax",
            Observation::PleuralEffusion => "Pleural Effusion",
            Observation::PleuralOther => "Pleural Other",
            Observation::Fracture => "Fracture",
            Observation::SupportDevices => "Support Devices",
        }
    }

    /// The observation of a CheXpert name (None: not one of the 14).
    pub fn parse(name: &str) -> Option<Observation> {
        Observation::ALL.into_iter().find(|o| o.name() == name)
    }
}

impl fmt::Display for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Observation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Observation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Observation::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("{name:?} is not a CheXpert observation"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Observation;

    #[test]
    fn names_read_back_and_serialise_as_names() {
        for o in Observation::ALL {
            assert_eq!(Observation::parse(o.name()), Some(o));
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{}\"", o.name()));
            assert_eq!(serde_json::from_str::<Observation>(&json).unwrap(), o);
        }
        assert!(serde_json::from_str::<Observation>("\"Pneumonitis\"").is_err());
    }
}
