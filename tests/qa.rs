//! `radassist qa compare`: drafts against final reads, per study and per model version.

use crate::common;

#[test]
fn compare_counts_agreement_per_observation_and_group() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    // Final reads are the reference. Pleural Effusion: v1 has TP, FP, TN; v2 has FN, TP.
    // Pneumothorax: negative in every draft and final read except one uncertain final (v2).
    let lines = [
        r#"{"id": 1, "model_version": "v1", "date": "2026-10-03", "draft": "There is a pleural effusion. No pneumothorax.", "final": "Small left pleural effusion. No pneumothorax.", "draft_devices": {"endotracheal_tube": "appropriate"}, "final_devices": {"endotracheal_tube": "appropriate"}}"#,
        r#"{"id": 2, "model_version": "v1", "date": "2026-10-20", "draft": "There is a pleural effusion. No pneumothorax.", "final": "No pleural effusion. No pneumothorax.", "draft_devices": {"endotracheal_tube": "appropriate"}, "final_devices": {"endotracheal_tube": "malpositioned"}}"#,
        r#"{"id": 3, "model_version": "v1", "date": "2026-11-02", "draft": "No pleural effusion. No pneumothorax.", "final": "No pleural effusion or pneumothorax."}"#,
        r#"{"id": "4", "model_version": "v2", "date": "2026-11-10", "draft": "No pleural effusion. No pneumothorax.", "final": "Moderate right pleural effusion. Small pneumothorax cannot be excluded."}"#,
        r#"{"id": "5", "model_version": "v2", "date": "2026-11-11", "draft": "There is a pleural effusion.", "final": "There is a pleural effusion."}"#,
    ];
    std::fs::write(&pairs, lines.join("\n") + "\n").unwrap();
    let pairs_path = pairs.to_str().unwrap();
    let run = |extra: &[&str]| {
        let args: Vec<&str> = ["qa", "compare", "--jsonl", pairs_path, "--json"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        String::from_utf8(common::run_radassist(&args).stdout).unwrap()
    };
    let summary: serde_json::Value =
        serde_json::from_str(run(&["--by", "version", "--no-sentences"]).trim()).unwrap();
    let groups = summary["agreement"].as_array().unwrap();
    assert_eq!(
        groups
            .iter()
            .map(|g| g["group"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["v1", "v2"]
    );
    let table = |group: usize, observation: &str| {
        let o = groups[group]["observations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["observation"] == observation)
            .unwrap()
            .clone();
        let t = &o["table"];
        (
            [
                t["true_positive"].as_u64().unwrap(),
                t["false_positive"].as_u64().unwrap(),
                t["false_negative"].as_u64().unwrap(),
                t["true_negative"].as_u64().unwrap(),
            ],
            o,
        )
    };
    let (effusion_v1, stats) = table(0, "Pleural Effusion");
    assert_eq!(effusion_v1, [1, 1, 0, 1]);
    // po = 2/3, pe = (2*1 + 1*2)/9 = 4/9, kappa = (2/3 - 4/9) / (5/9) = 0.4.
    assert!(
        (stats["kappa"]["value"].as_f64().unwrap() - 0.4).abs() < 1e-9,
        "{stats}"
    );
    assert_eq!(stats["ppv"]["value"], 0.5);
    let (effusion_v2, _) = table(1, "Pleural Effusion");
    assert_eq!(effusion_v2, [1, 0, 1, 0]);
    // The uncertain pneumothorax of study 4 counts as positive by default...
    assert_eq!(table(1, "Pneumothorax").0, [0, 0, 1, 1]);
    assert_eq!(groups[0]["device_agreement"]["value"], 0.5);
    // ...and is left out with --uncertain exclude.
    let excluded: serde_json::Value = serde_json::from_str(
        run(&[
            "--by",
            "version",
            "--no-sentences",
            "--uncertain",
            "exclude",
        ])
        .trim(),
    )
    .unwrap();
    let o = excluded["agreement"][1]["observations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["observation"] == "Pneumothorax")
        .unwrap()
        .clone();
    assert_eq!(o["excluded"], 1);
    // By month: October and November.
    let by_month: serde_json::Value =
        serde_json::from_str(run(&["--by", "month", "--no-sentences"]).trim()).unwrap();
    assert_eq!(by_month["agreement"][0]["group"], "2026-10");
    assert_eq!(by_month["agreement"][1]["studies"], 3);

    // Beside each observation, the labeler's own F1 on real reports; low ones are flagged.
    let observations = groups[0]["observations"].as_array().unwrap();
    let measured: Vec<(&str, f64)> = observations
        .iter()
        .filter_map(|o| Some((o["observation"].as_str()?, o["labeler_f1"].as_f64()?)))
        .collect();
    assert_eq!(measured.len(), 10, "{observations:?}");
    let (weakest, weakest_f1) = measured
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(weakest_f1 < 0.8, "the test needs one low F1: {measured:?}");
    let text = String::from_utf8(
        common::run_radassist(&["qa", "compare", "--jsonl", pairs_path, "--no-sentences"]).stdout,
    )
    .unwrap();
    assert!(text.contains("labeler F1"), "{text}");
    assert!(
        text.contains("note: the labeler's own F1 on real reports is below 0.80 for")
            && text.contains(&format!("{weakest} ({weakest_f1:.2})")),
        "{text}"
    );

    // Per study, with MiniLM sentence matching.
    if !common::onnx_runtime_available() {
        return;
    }
    let out = common::run_radassist(&[
        "qa",
        "compare",
        "--jsonl",
        pairs_path,
        "--per-study",
        "--provider",
        "cpu",
    ]);
    let studies: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(studies.len(), 5);
    assert_eq!(studies[4]["edit_distance"], 0);
    assert_eq!(studies[4]["sentences"]["final_matched"], 1);
    assert_eq!(studies[0]["labels"]["Pleural Effusion"]["agree"], true);
    assert_eq!(
        studies[1]["labels"]["Pleural Effusion"]["draft"],
        "positive"
    );
    assert_eq!(
        studies[1]["labels"]["Pleural Effusion"]["final"],
        "negative"
    );
    assert_eq!(studies[1]["devices"][0]["agree"], false);
}
