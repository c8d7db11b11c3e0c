//! Line charts as SVG, so a reader sees the harness's curves (docs/benchmarks.md): categorical
//! x positions, a linear or logarithmic y axis, one line per series. Nothing to install.

use std::fmt::Write as _;

/// One chart: its title, the x axis's labels, the y axis's label and scale, and the series.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub x: Vec<String>,
    pub y_label: &'a str,
    pub log_y: bool,
    pub series: Vec<(&'a str, Vec<f64>)>,
}

const WIDTH: f64 = 460.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// The charts side by side in one SVG document.
pub fn svg(charts: &[Chart]) -> String {
    let width = WIDTH * charts.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n"
    );
    for (i, chart) in charts.iter().enumerate() {
        let _ = writeln!(out, "<g transform=\"translate({},0)\">", WIDTH * i as f64);
        draw(&mut out, chart);
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

fn draw(out: &mut String, chart: &Chart) {
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let values = chart.series.iter().flat_map(|(_, ys)| ys.iter().copied());
    let scale = |y: f64| if chart.log_y { y.max(1e-9).log10() } else { y };
    let (mut low, mut high) = values.fold((f64::MAX, f64::MIN), |(lo, hi), y| {
        (lo.min(scale(y)), hi.max(scale(y)))
    });
    if chart.log_y {
        (low, high) = (low.floor(), high.ceil().max(low.floor() + 1.0));
    } else {
        (low, high) = (0.0, high * 1.1);
    }
    let y_at = |y: f64| TOP + plot_h * (1.0 - (scale(y) - low) / (high - low).max(1e-9));
    let step = plot_w / chart.x.len().max(1) as f64;
    let x_at = |i: usize| LEFT + step * (i as f64 + 0.5);
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
        WIDTH / 2.0,
        chart.title
    );
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" \
         stroke=\"#999\"/>"
    );
    // Y ticks: powers of ten on a log axis, five even steps on a linear one.
    let ticks: Vec<f64> = if chart.log_y {
        (low as i32..=high as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=5).map(|k| high * k as f64 / 5.0).collect()
    };
    for tick in ticks {
        let y = y_at(tick);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 5.0,
            y + 4.0,
            human(tick)
        );
    }
    for (i, label) in chart.x.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            x_at(i),
            TOP + plot_h + 16.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 22.0,
        chart.x_label
    );
    let _ = writeln!(
        out,
        "<text transform=\"translate(14,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        TOP + plot_h / 2.0,
        chart.y_label
    );
    for (k, (name, ys)) in chart.series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<String> = ys
            .iter()
            .enumerate()
            .map(|(i, y)| format!("{:.1},{:.1}", x_at(i), y_at(*y)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            points.join(" ")
        );
        for point in &points {
            let (x, y) = point.split_once(',').unwrap_or_default();
            let _ = writeln!(
                out,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
        let legend_y = HEIGHT - 8.0;
        let legend_x = LEFT + 150.0 * k as f64;
        let _ = writeln!(
            out,
            "<rect x=\"{legend_x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{legend_y}\">{name}</text>",
            legend_y - 9.0,
            legend_x + 14.0
        );
    }
}

/// `1500` → `1.5k`, `2000000` → `2M`, `0.5` → `0.5`.
fn human(value: f64) -> String {
    let (scaled, unit) = match value.abs() {
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let text = format!("{scaled:.1}");
    format!("{}{unit}", text.trim_end_matches(".0"))
}
