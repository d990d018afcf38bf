//! Helpers the examples share: a small PNG chart writer (lines and scatter plots) and
//! command-line flags. Kept out of the library: only examples draw pictures.

#![allow(dead_code)]

use std::path::Path;

/// One curve or point cloud of a chart.
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
    /// RGB colour.
    pub color: [u8; 3],
}

/// A titled panel of a chart.
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
    /// Draw points instead of lines.
    pub scatter: bool,
}

const W: usize = 480;
const H: usize = 360;
const MARGIN: usize = 40;

/// 3x5 glyphs, one row of 3 bits per line, top first.
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 2, 2, 2],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '%' => [5, 1, 2, 4, 5],
        '-' => [0, 0, 7, 0, 0],
        ':' => [0, 2, 0, 2, 0],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [7, 4, 4, 4, 7],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [7, 4, 5, 5, 7],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [7, 5, 5, 5, 7],
        'P' => [7, 5, 7, 4, 4],
        'R' => [6, 5, 6, 5, 5],
        'S' => [7, 4, 7, 1, 7],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        _ => [0; 5],
    }
}

struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn set(&mut self, x: isize, y: isize, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    fn line(&mut self, (x0, y0): (isize, isize), (x1, y1): (isize, isize), c: [u8; 3]) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for s in 0..=steps {
            let x = x0 + (x1 - x0) * s / steps;
            let y = y0 + (y1 - y0) * s / steps;
            self.set(x, y, c);
            self.set(x, y + 1, c);
        }
    }

    fn text(&mut self, x: usize, y: usize, s: &str, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            for (row, bits) in glyph(ch).iter().enumerate() {
                for col in 0..3 {
                    if bits & (4 >> col) != 0 {
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(
                                (x + k * 8 + col * 2 + dx) as isize,
                                (y + row * 2 + dy) as isize,
                                c,
                            );
                        }
                    }
                }
            }
        }
    }
}

fn label(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Writes panels side by side into a PNG: axes with min/max labels, a grid, a legend.
pub fn write_chart(path: &Path, panels: &[Panel]) -> std::io::Result<()> {
    let width = W * panels.len();
    let mut canvas = Canvas { width, height: H, pixels: vec![255; width * H * 3] };
    for (p, panel) in panels.iter().enumerate() {
        let x0 = p * W;
        let all: Vec<(f64, f64)> =
            panel.series.iter().flat_map(|s| s.points.iter().copied()).collect();
        let (mut xmin, mut xmax, mut ymin, mut ymax) = all.iter().fold(
            (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY),
            |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
        );
        if !xmin.is_finite() {
            (xmin, xmax, ymin, ymax) = (0.0, 1.0, 0.0, 1.0);
        }
        if xmax == xmin {
            xmax = xmin + 1.0;
        }
        if ymax == ymin {
            ymax = ymin + 1.0;
        }
        let (pw, ph) = (W - 2 * MARGIN, H - 2 * MARGIN);
        let to_px = |(x, y): (f64, f64)| -> (isize, isize) {
            let px = x0 + MARGIN + ((x - xmin) / (xmax - xmin) * pw as f64) as usize;
            let py = H - MARGIN - ((y - ymin) / (ymax - ymin) * ph as f64) as usize;
            (px as isize, py as isize)
        };
        for k in 0..=4 {
            let gy = (H - MARGIN - k * ph / 4) as isize;
            let gx = (x0 + MARGIN + k * pw / 4) as isize;
            canvas.line(
                (x0 as isize + MARGIN as isize, gy),
                ((x0 + MARGIN + pw) as isize, gy),
                [225, 225, 225],
            );
            canvas.line((gx, MARGIN as isize), (gx, (H - MARGIN) as isize), [225, 225, 225]);
        }
        let axis = [60, 60, 60];
        canvas.line(
            ((x0 + MARGIN) as isize, MARGIN as isize),
            ((x0 + MARGIN) as isize, (H - MARGIN) as isize),
            axis,
        );
        canvas.line(
            ((x0 + MARGIN) as isize, (H - MARGIN) as isize),
            ((x0 + MARGIN + pw) as isize, (H - MARGIN) as isize),
            axis,
        );
        canvas.text(x0 + MARGIN, 10, &panel.title, [0, 0, 0]);
        canvas.text(x0 + 2, MARGIN - 4, &label(ymax), axis);
        canvas.text(x0 + 2, H - MARGIN - 4, &label(ymin), axis);
        canvas.text(x0 + MARGIN, H - MARGIN + 8, &label(xmin), axis);
        canvas.text(x0 + W - MARGIN - 40, H - MARGIN + 8, &label(xmax), axis);
        for (k, s) in panel.series.iter().enumerate() {
            canvas.text(x0 + W - MARGIN - 150, 10 + 14 * k, &s.name, s.color);
            if panel.scatter {
                for &pt in &s.points {
                    let (x, y) = to_px(pt);
                    for dx in -1..=1 {
                        for dy in -1..=1 {
                            canvas.set(x + dx, y + dy, s.color);
                        }
                    }
                }
            } else {
                for w in s.points.windows(2) {
                    canvas.line(to_px(w[0]), to_px(w[1]), s.color);
                }
            }
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, width as u32, H as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer.write_image_data(&canvas.pixels).map_err(std::io::Error::other)?;
    Ok(())
}

/// Checks the command line against the flags an example takes, each followed by a value:
/// `--help` (or `-h`) prints `usage` and exits; any other argument it does not know is an
/// error that names it, so a mistyped flag never runs silently with the defaults.
pub fn check_args(usage: &str, flags: &[&str]) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match first_unknown(&args, flags) {
        None => {}
        Some("--help" | "-h") => {
            println!("{usage}");
            std::process::exit(0);
        }
        Some(other) => {
            eprintln!("error: unknown argument {other:?}\n\n{usage}");
            std::process::exit(2);
        }
    }
}

/// The first argument that is neither one of `flags` nor the value after one.
pub fn first_unknown<'a>(args: &'a [String], flags: &[&str]) -> Option<&'a str> {
    let mut i = 0;
    while i < args.len() {
        if !flags.contains(&args[i].as_str()) {
            return Some(&args[i]);
        }
        i += 2;
    }
    None
}

/// The value after `--name` on the command line, parsed, or `default`.
pub fn flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => match args.get(i + 1).map(|v| v.parse()) {
            Some(Ok(v)) => v,
            _ => {
                eprintln!("error: {name} needs a value of the right kind");
                std::process::exit(2);
            }
        },
        None => default,
    }
}

/// The string after `--name`, if given.
pub fn flag_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

#[cfg(test)]
mod tests {
    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_and_their_values_are_known_and_anything_else_is_named() {
        use super::first_unknown;
        let flags = ["--epochs", "--model"];
        assert_eq!(first_unknown(&args("--epochs 3 --model cnn"), &flags), None);
        assert_eq!(first_unknown(&args(""), &flags), None);
        // A value that looks like a flag is still the flag's value.
        assert_eq!(first_unknown(&args("--model --epochs"), &flags), None);
        assert_eq!(first_unknown(&args("--epoch 3"), &flags), Some("--epoch"));
        assert_eq!(first_unknown(&args("--epochs 3 --help"), &flags), Some("--help"));
        assert_eq!(first_unknown(&args("cnn"), &flags), Some("cnn"));
    }
}
