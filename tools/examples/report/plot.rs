//! Small SVG line charts: a grid of panels sharing one legend, with no
//! dependency (the report must build wherever the crate builds).

use std::fmt::Write;

/// One line of a panel: its name (the legend's) and its points.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// One chart of the grid.
pub(crate) struct Panel {
    pub(crate) title: String,
    pub(crate) series: Vec<Series>,
}

/// How the axes are drawn.
pub(crate) struct Axes<'a> {
    pub(crate) x_label: &'a str,
    pub(crate) y_label: &'a str,
    /// Thread counts: a log2 x axis with a tick at each point's x.
    pub(crate) x_log2: bool,
    /// A log10 y axis (values below 1 are drawn at 1).
    pub(crate) y_log: bool,
}

const PALETTE: [&str; 12] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939",
];

const PW: f64 = 300.0; // panel plot area
const PH: f64 = 190.0;
const ML: f64 = 62.0; // margins inside a panel cell
const MT: f64 = 28.0;
const CW: f64 = PW + ML + 16.0; // cell size
const CH: f64 = PH + MT + 42.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A tick label: short, without trailing zeros.
fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// "Nice" linear ticks from 0 to at least `max`.
fn ticks(max: f64) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (0..=((max / step).ceil() as usize))
        .map(|i| i as f64 * step)
        .collect()
}

/// The grid of `panels`, `cols` wide, under `title`, as an SVG document.
pub(crate) fn chart(title: &str, panels: &[Panel], cols: usize, axes: &Axes) -> String {
    // One colour per series name, in order of first appearance.
    let mut names: Vec<&str> = Vec::new();
    for s in panels.iter().flat_map(|p| &p.series) {
        if !names.contains(&s.name.as_str()) {
            names.push(&s.name);
        }
    }
    let color = |n: &str| PALETTE[names.iter().position(|x| *x == n).unwrap_or(0) % PALETTE.len()];
    let cols = cols.max(1).min(panels.len().max(1));
    let rows = panels.len().div_ceil(cols);
    let legend_rows = names.len().div_ceil(4);
    let w = cols as f64 * CW + 20.0;
    let h = 40.0 + rows as f64 * CH + legend_rows as f64 * 18.0 + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"10\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>",
        w / 2.0,
        esc(title)
    );
    for (i, p) in panels.iter().enumerate() {
        let ox = 10.0 + (i % cols) as f64 * CW + ML;
        let oy = 40.0 + (i / cols) as f64 * CH + MT;
        panel(&mut s, p, ox, oy, axes, &color);
    }
    // The legend.
    let ly = 40.0 + rows as f64 * CH + 4.0;
    for (k, n) in names.iter().enumerate() {
        let x = 20.0 + (k % 4) as f64 * (w - 40.0) / 4.0;
        let y = ly + (k / 4) as f64 * 18.0;
        let _ = writeln!(
            s,
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{}</text>",
            x + 18.0,
            color(n),
            x + 22.0,
            y + 4.0,
            esc(n)
        );
    }
    s += "</svg>\n";
    s
}

fn panel(
    s: &mut String,
    p: &Panel,
    ox: f64,
    oy: f64,
    axes: &Axes,
    color: &dyn Fn(&str) -> &'static str,
) {
    let pts = || p.series.iter().flat_map(|s| s.points.iter());
    let xmin = pts().map(|q| q.0).fold(f64::INFINITY, f64::min);
    let xmax = pts().map(|q| q.0).fold(f64::NEG_INFINITY, f64::max);
    let ymax = pts().map(|q| q.1).fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">{}</text>",
        ox + PW / 2.0,
        oy - 10.0,
        esc(&p.title)
    );
    if !xmin.is_finite() {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\">no data</text>",
            ox + 10.0,
            oy + PH / 2.0
        );
        return;
    }
    // x mapping.
    let fx = |x: f64| -> f64 {
        let (a, b, v) = if axes.x_log2 {
            (
                xmin.max(1.0).log2(),
                xmax.max(1.0).log2(),
                x.max(1.0).log2(),
            )
        } else {
            (xmin, xmax, x)
        };
        if b > a {
            ox + (v - a) / (b - a) * PW
        } else {
            ox + PW / 2.0
        }
    };
    // y mapping and ticks.
    let (fy, yt): (Box<dyn Fn(f64) -> f64>, Vec<f64>) = if axes.y_log {
        let top = ymax.max(10.0).log10().ceil();
        (
            Box::new(move |y: f64| oy + PH - y.max(1.0).log10() / top * PH),
            (0..=top as i32).map(|e| 10f64.powi(e)).collect(),
        )
    } else {
        let t = ticks(ymax);
        let top = *t.last().unwrap();
        (Box::new(move |y: f64| oy + PH - y / top * PH), t)
    };
    let _ = writeln!(
        s,
        "<rect x=\"{ox}\" y=\"{oy}\" width=\"{PW}\" height=\"{PH}\" fill=\"none\" stroke=\"#999\"/>"
    );
    for &t in &yt {
        let y = fy(t);
        let _ = writeln!(
            s,
            "<line x1=\"{ox}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            ox + PW,
            ox - 4.0,
            y + 3.0,
            num(t)
        );
    }
    let mut xt: Vec<f64> = if axes.x_log2 {
        pts().map(|q| q.0).collect()
    } else {
        ticks(xmax)
    };
    xt.sort_by(f64::total_cmp);
    xt.dedup();
    for &t in xt.iter().filter(|t| **t >= xmin && **t <= xmax) {
        let x = fx(t);
        let _ = writeln!(
            s,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            oy + PH + 13.0,
            num(t)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        ox + PW / 2.0,
        oy + PH + 27.0,
        esc(axes.x_label),
        ox - 46.0,
        oy + PH / 2.0,
        esc(axes.y_label)
    );
    for se in &p.series {
        let path: Vec<String> = se
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", fx(x), fy(y)))
            .collect();
        let c = color(&se.name);
        let _ = writeln!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1.8\"/>",
            path.join(" ")
        );
        if se.points.len() <= 16 {
            for &(x, y) in &se.points {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{c}\"/>",
                    fx(x),
                    fy(y)
                );
            }
        }
    }
}
