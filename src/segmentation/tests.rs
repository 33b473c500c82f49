use super::*;
use crate::inference::preprocess::Placement;

const SIZE: usize = 128;

fn masks(structures: Vec<(Structure, Array2<f32>)>, feet_sign: f64) -> Masks {
    Masks {
        structures,
        threshold: 0.5,
        placement: Placement {
            scale_x: 0.5,
            scale_y: 0.5,
            offset_x: 0.0,
            offset_y: 0.0,
        },
        input: (SIZE, SIZE),
        feet_sign,
        model: "test 1".into(),
    }
}

fn blank() -> Array2<f32> {
    Array2::zeros((SIZE, SIZE))
}

fn fill(mask: &mut Array2<f32>, rows: std::ops::Range<usize>, columns: std::ops::Range<usize>) {
    for r in rows {
        for c in columns.clone() {
            mask[(r, c)] = 0.9;
        }
    }
}

/// A trachea: a bar down to row 60, then two bronchi going out and down.
fn trachea() -> Array2<f32> {
    let mut m = blank();
    fill(&mut m, 10..61, 60..68);
    for step in 0..20 {
        let r = 61 + step;
        fill(&mut m, r..r + 1, 58 - step..64 - step);
        fill(&mut m, r..r + 1, 64 + step..70 + step);
    }
    m
}

fn landmark<'a>(found: &'a [Landmark], name: &str) -> &'a Landmark {
    found.iter().find(|l| l.name == name).unwrap()
}

#[test]
fn the_carina_is_where_the_trachea_splits_and_in_image_pixels() {
    let found = derive(&masks(vec![(Structure::Trachea, trachea())], 1.0));
    let carina = landmark(&found, names::CARINA);
    // Rows 61 and 62 still touch at the middle; from row 62 on there is a gap at 63.5 or so:
    // the split row's gap centre, mapped with the placement's scale of 0.5.
    let (x, y) = ((carina.x + 0.5) * 0.5 - 0.5, (carina.y + 0.5) * 0.5 - 0.5);
    assert!((61.0..=64.0).contains(&y), "{carina:?}");
    assert!((x - 63.5).abs() <= 1.0, "{carina:?}");
    assert!((carina.confidence - 0.9).abs() < 1e-6);
    let how = carina.derivation.as_deref().unwrap();
    assert!(how.contains("splits into the main bronchi"), "{how}");
    assert_eq!(carina.model, "test 1");
}

#[test]
fn the_bifurcation_region_wins_over_the_trachea() {
    let mut region = blank();
    fill(&mut region, 58..66, 58..70);
    let found = derive(&masks(
        vec![
            (Structure::TrachealBifurcation, region),
            (Structure::Trachea, trachea()),
        ],
        1.0,
    ));
    let carina = landmark(&found, names::CARINA);
    assert_eq!(found.iter().filter(|l| l.name == names::CARINA).count(), 1);
    assert_eq!(
        (carina.x, carina.y),
        ((63.5 + 0.5) * 2.0 - 0.5, (61.5 + 0.5) * 2.0 - 0.5)
    );
}

#[test]
fn the_dome_and_the_atrium_s_upper_border_follow_the_patient_s_head() {
    let mut dome = blank();
    for c in 70..110usize {
        let top = 80 + ((c as i64 - 90).pow(2) / 40) as usize;
        fill(&mut dome, top..100, c..c + 1);
    }
    let mut atrium = blank();
    fill(&mut atrium, 50..70, 40..55);
    let up = derive(&masks(
        vec![
            (Structure::LeftHemidiaphragm, dome.clone()),
            (Structure::RightAtrium, atrium.clone()),
        ],
        1.0,
    ));
    let d = landmark(&up, names::LEFT_HEMIDIAPHRAGM);
    assert_eq!(
        ((d.x + 0.5) / 2.0 - 0.5, (d.y + 0.5) / 2.0 - 0.5),
        (90.0, 80.0)
    );
    let j = landmark(&up, names::CAVOATRIAL_JUNCTION);
    assert_eq!((j.y + 0.5) / 2.0 - 0.5, 50.0);
    // Rows running towards the head: the highest point is the last row.
    let down = derive(&masks(vec![(Structure::RightAtrium, atrium)], -1.0));
    let j = landmark(&down, names::CAVOATRIAL_JUNCTION);
    assert_eq!((j.y + 0.5) / 2.0 - 0.5, 69.0);
}

#[test]
fn a_tube_s_tip_is_the_far_end_of_its_course_from_the_edge() {
    // Down from the top edge, then curving to the right and back up a little (a looped tube
    // whose lowest point is not its tip).
    let mut tube = blank();
    fill(&mut tube, 0..90, 30..34);
    fill(&mut tube, 86..90, 30..80);
    fill(&mut tube, 70..90, 76..80);
    let found = derive(&masks(vec![(Structure::EndotrachealTube, tube)], 1.0));
    let tip = landmark(&found, names::ETT_TIP);
    let (x, y) = ((tip.x + 0.5) / 2.0 - 0.5, (tip.y + 0.5) / 2.0 - 0.5);
    assert!(
        (76.0..=80.0).contains(&x) && (70.0..=73.0).contains(&y),
        "{tip:?}"
    );
    assert!(tip
        .derivation
        .as_deref()
        .unwrap()
        .contains("farthest along its course"));
}

/// Reproducible speckle: each pixel on with probability `density`.
fn speckle(density: f64, seed: u64) -> Array2<f32> {
    let mut state = seed;
    Array2::from_shape_fn((SIZE, SIZE), |_| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if ((state >> 33) as f64 / (1u64 << 31) as f64) < density {
            0.9
        } else {
            0.1
        }
    })
}

#[test]
fn empty_scattered_and_flooding_masks_are_not_identified_and_say_why() {
    let found = derive(&masks(
        vec![
            (Structure::TrachealBifurcation, blank()),
            (Structure::LeftHemidiaphragm, speckle(0.02, 1)),
            (Structure::RightAtrium, speckle(0.6, 2)),
            (Structure::EndotrachealTube, blank()),
            (Structure::CentralVenousCatheter, speckle(0.02, 3)),
        ],
        1.0,
    ));
    let why = |name: &str| {
        let l = landmark(&found, name);
        assert_eq!(l.confidence, 0.0, "{l:?}");
        l.derivation.clone().unwrap()
    };
    assert!(why(names::CARINA).contains("its mask is empty"));
    assert!(why(names::LEFT_HEMIDIAPHRAGM).contains("scattered"));
    assert!(why(names::CAVOATRIAL_JUNCTION).contains("more than a right atrium can"));
    assert!(why(names::CVC_TIP).contains("central venous catheter is not identified"));
    // An empty device mask: no device, no landmark.
    assert!(found.iter().all(|l| l.name != names::ETT_TIP));
}
