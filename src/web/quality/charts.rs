//! The QA page's SVG charts: label agreement, device agreement and edit fraction of the signed
//! studies by month of signing and by model version, overall and for one observation.

use super::Signed;
use crate::labeler::Observation;
use crate::qa::{wilson, AgreementBuilder, Estimate, UncertainPolicy};
use crate::web::chart::{line_chart, Series};
use crate::web::page;
use std::collections::BTreeMap;

/// The four charts of a period's studies.
pub struct Charts {
    pub by_month: String,
    pub by_version: String,
    pub observation_by_month: String,
    pub observation_by_version: String,
}

impl Charts {
    /// The charts of `studies`, the observation ones for `charted`.
    pub fn of(studies: &[Signed], charted: Observation) -> Charts {
        let month = |s: &Signed| page::when(s.signed_at).get(..7).unwrap_or("").to_string();
        let version = |s: &Signed| s.model_version.clone();
        let one = |groups: &BTreeMap<String, Vec<&Signed>>| observation_series(groups, charted);
        Charts {
            by_month: chart_by(
                "chart-month",
                "By month of signing",
                studies,
                month,
                group_series,
            ),
            by_version: chart_by(
                "chart-version",
                "By model version",
                studies,
                version,
                group_series,
            ),
            observation_by_month: chart_by(
                "chart-observation-month",
                &format!("{charted} by month of signing"),
                studies,
                month,
                one,
            ),
            observation_by_version: chart_by(
                "chart-observation-version",
                &format!("{charted} by model version"),
                studies,
                version,
                one,
            ),
        }
    }
}

/// Label agreement (study × observation pairs that agree), device agreement, and mean edit
/// fraction of a group of studies.
fn group_series(groups: &BTreeMap<String, Vec<&Signed>>) -> Vec<Series> {
    let mut labels = vec![];
    let mut devices = vec![];
    let mut edits = vec![];
    for members in groups.values() {
        let pairs: Vec<bool> = members
            .iter()
            .flat_map(|s| s.comparison.labels.values().map(|a| a.agree))
            .collect();
        let agree = pairs.iter().filter(|a| **a).count() as u64;
        let label = wilson(agree, pairs.len() as u64);
        labels.push(label.value.map(|v| (v, label.low.zip(label.high))));
        let both: Vec<bool> = members
            .iter()
            .flat_map(|s| &s.comparison.devices)
            .filter(|d| d.draft.is_some() && d.final_read.is_some())
            .map(|d| d.agree)
            .collect();
        let device = wilson(
            both.iter().filter(|a| **a).count() as u64,
            both.len() as u64,
        );
        devices.push(device.value.map(|v| (v, device.low.zip(device.high))));
        let mean = members
            .iter()
            .map(|s| s.comparison.edit_fraction)
            .sum::<f64>()
            / members.len().max(1) as f64;
        edits.push((!members.is_empty()).then_some((mean, None)));
    }
    vec![
        Series {
            name: "Finding labels agree".into(),
            class: "s1",
            points: labels,
        },
        Series {
            name: "Device verdicts agree".into(),
            class: "s2",
            points: devices,
        },
        Series {
            name: "Words edited (mean)".into(),
            class: "s3",
            points: edits,
        },
    ]
}

/// One observation's sensitivity and PPV in each group, with their intervals.
fn observation_series(groups: &BTreeMap<String, Vec<&Signed>>, o: Observation) -> Vec<Series> {
    let (mut sensitivity, mut ppv) = (vec![], vec![]);
    for members in groups.values() {
        let mut builder = AgreementBuilder::new("group", UncertainPolicy::Positive);
        for s in members {
            builder.add(&s.comparison);
        }
        let agreement = builder.finish();
        let stats = agreement.observations.iter().find(|x| x.observation == o);
        let point = |e: Option<Estimate>| e.and_then(|e| e.value.map(|v| (v, e.low.zip(e.high))));
        sensitivity.push(point(stats.map(|x| x.sensitivity)));
        ppv.push(point(stats.map(|x| x.ppv)));
    }
    vec![
        Series {
            name: format!("{o}: sensitivity"),
            class: "s1",
            points: sensitivity,
        },
        Series {
            name: format!("{o}: PPV"),
            class: "s2",
            points: ppv,
        },
    ]
}

/// Studies grouped by `key` (a month, a model version), charted by `series`.
fn chart_by(
    id: &str,
    title: &str,
    studies: &[Signed],
    key: impl Fn(&Signed) -> String,
    series: impl Fn(&BTreeMap<String, Vec<&Signed>>) -> Vec<Series>,
) -> String {
    let mut groups: BTreeMap<String, Vec<&Signed>> = BTreeMap::new();
    for s in studies {
        groups.entry(key(s)).or_default().push(s);
    }
    let names: Vec<String> = groups.keys().cloned().collect();
    line_chart(id, title, &names, &series(&groups))
}
