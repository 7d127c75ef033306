//! QR codes of otpauth:// URIs: in the terminal, as PNG and as SVG.

use anyhow::{Context, Result};
use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode};
use std::path::Path;

fn code(text: &str) -> Result<QrCode> {
    QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).context("the text is too long for a QR code")
}

/// The QR code as half-block characters, light modules drawn, so it scans from a dark
/// terminal (the common default); a 4-module quiet zone is included.
pub fn terminal(text: &str) -> Result<String> {
    Ok(code(text)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// Writes a file readable only by its owner: a QR code holds the token's secret. A new
/// file (exclusive, 0600, no symlink followed) replaces the path by rename, so an existing
/// file's looser mode is not kept and a planted symlink is refused, not written through.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    portcullis_userfiles::atomic::write_atomic_as(path, bytes, "QR code")
        .with_context(|| format!("{}: cannot write the QR code", path.display()))
}

/// Writes a black-on-white PNG, `scale` pixels per module, with a 4-module quiet zone.
pub fn png(text: &str, path: &Path, scale: usize) -> Result<()> {
    let qr = code(text)?;
    let width = qr.width();
    let colors = qr.to_colors();
    let border = 4;
    let side = (width + 2 * border) * scale;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % width + border, i / width + border);
        for y in my * scale..(my + 1) * scale {
            pixels[y * side + mx * scale..y * side + (mx + 1) * scale].fill(0);
        }
    }
    let mut out = Vec::new();
    {
        let side = u32::try_from(side).context("QR code too large")?;
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().context("PNG encoder")?;
        w.write_image_data(&pixels).context("PNG encoder")?;
    }
    write_private(path, &out)
}

/// The QR code as an SVG document.
pub fn svg_string(text: &str) -> Result<String> {
    Ok(code(text)?
        .render::<svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

/// Writes an SVG image of the QR code.
pub fn svg(text: &str, path: &Path) -> Result<()> {
    write_private(path, svg_string(text)?.as_bytes())
}
