//! Charts for the QA page, drawn as SVG on the server: no script, nothing to download, and
//! they print. One kind is enough for QA: values (0–1) per group (a month, a model version)
//! as lines with their 95 % intervals as whiskers. Every text in the SVG is escaped here,
//! since the page includes the SVG as it is.

use crate::markup::escape;
use std::fmt::Write;

/// A value (0 to 1) with its 95 % interval when it has one.
pub type Point = (f64, Option<(f64, f64)>);

/// One line of a chart.
pub struct Series {
    pub name: String,
    /// Its CSS class (the colour): s1, s2, s3.
    pub class: &'static str,
    /// One value per group (None: no data there), with its interval when it has one.
    pub points: Vec<Option<Point>>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 56.0;

/// Where values land on the plot: `groups` spread along x, 0 to 1 up y.
struct Plot {
    groups: usize,
}

impl Plot {
    fn x(&self, i: usize) -> f64 {
        let plot_w = WIDTH - LEFT - RIGHT;
        if self.groups <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (self.groups - 1) as f64
        }
    }

    fn y(&self, v: f64) -> f64 {
        TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - v.clamp(0.0, 1.0))
    }
}

/// A chart of `series` over `groups` (the x axis), values from 0 to 1 shown as percent.
pub fn line_chart(id: &str, title: &str, groups: &[String], series: &[Series]) -> String {
    let mut svg = String::new();
    let plot = Plot {
        groups: groups.len(),
    };
    let _ = write!(
        svg,
        r#"<svg id="{}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(id),
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<text class="title" x="{LEFT}" y="16">{}</text>"#,
        escape(title)
    );
    axes(&mut svg, &plot, groups);
    for s in series {
        draw_series(&mut svg, &plot, groups, s);
    }
    legend(&mut svg, series);
    if groups.is_empty() {
        let _ = write!(
            svg,
            r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">No signed studies in this period.</text>"#,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The percent grid and ticks, and the groups' names along x.
fn axes(svg: &mut String, plot: &Plot, groups: &[String]) {
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{:.0}%</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            plot.y(tick) + 4.0,
            tick * 100.0,
            y = plot.y(tick),
        );
    }
    for (i, g) in groups.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            plot.x(i),
            HEIGHT - BOTTOM + 16.0,
            escape(g)
        );
    }
}

/// One series: its points (each with its interval's whisker and a tooltip) and the line
/// through them.
fn draw_series(svg: &mut String, plot: &Plot, groups: &[String], s: &Series) {
    let mut path = String::new();
    for (i, p) in s.points.iter().enumerate() {
        let Some((v, interval)) = p else { continue };
        let _ = write!(
            path,
            "{}{:.1},{:.1} ",
            if path.is_empty() { "M" } else { "L" },
            plot.x(i),
            plot.y(*v)
        );
        if let Some((low, high)) = interval {
            let _ = write!(
                svg,
                r#"<line class="whisker {}" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}"/>"#,
                s.class,
                plot.y(*low),
                plot.y(*high),
                x = plot.x(i)
            );
        }
        let _ = write!(
            svg,
            r#"<circle class="point {}" cx="{:.1}" cy="{:.1}" r="3.5"><title>{}: {}: {:.1}%</title></circle>"#,
            s.class,
            plot.x(i),
            plot.y(*v),
            escape(&s.name),
            escape(&groups[i]),
            v * 100.0
        );
    }
    if !path.is_empty() {
        let _ = write!(
            svg,
            r#"<path class="line {}" d="{}"/>"#,
            s.class,
            path.trim_end()
        );
    }
}

/// The key: each series' colour and name along the bottom.
fn legend(svg: &mut String, series: &[Series]) {
    for (k, s) in series.iter().enumerate() {
        let lx = LEFT + k as f64 * 200.0;
        let ly = HEIGHT - 12.0;
        let _ = write!(
            svg,
            r#"<rect class="key {}" x="{lx:.1}" y="{:.1}" width="12" height="4"/><text class="legend" x="{:.1}" y="{ly:.1}">{}</text>"#,
            s.class,
            ly - 5.0,
            lx + 16.0,
            escape(&s.name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_escapes_its_labels_and_draws_each_point() {
        let svg = line_chart(
            "c",
            "Agreement <by month>",
            &["2026-11".into(), "<script>".into()],
            &[Series {
                name: "labels".into(),
                class: "s1",
                points: vec![Some((0.5, Some((0.4, 0.6)))), None],
            }],
        );
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"));
        assert_eq!(svg.matches("<circle").count(), 1);
        assert_eq!(svg.matches("whisker").count(), 1);
    }
}
