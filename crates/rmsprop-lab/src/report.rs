//! The chapter's self-contained HTML report: every figure inlined as SVG, the book's
//! printed result next to ours, no external references.

use std::fmt::Write;

/// One section of the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// One paragraph of explanation (plain text).
    pub text: String,
    /// SVG documents to show, in order.
    #[serde(skip)]
    pub figures: Vec<String>,
    /// The resolved hyperparameters of every optimizer in the section, one line each.
    pub hyperparameters: Vec<String>,
    /// What the book prints, runs or asks, line by line (nothing of ours).
    pub book: Vec<String>,
    /// What we print, line by line.
    pub ours: Vec<String>,
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG document as inline HTML: the XML namespace attribute (a name, not a
/// reference, but the only URL in the file) is dropped, as HTML5 does not need it.
fn inline_svg(svg: &str) -> String {
    svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1)
}

/// The whole report: the sections, then `interactive` (HTML of our own making, such as the
/// [`crate::explorer`], inserted as it is).
pub fn html(title: &str, preamble: &str, sections: &[Section], interactive: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
         body{{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}}\
         section{{margin-bottom:2.5em}} svg{{max-width:100%;height:auto;display:block;margin:1em 0}}\
         table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;font-family:monospace}}\
         .note{{background:#fff6d5;padding:.5em 1em;border-left:4px solid #e0b000}}.hp{{font-family:monospace;font-size:90%;color:#444}}\
         .controls label{{display:inline-block;margin:.3em 1.2em .3em 0}} .controls input[type=range]{{vertical-align:middle;width:10em}}\
         #explorer svg{{display:inline-block;margin:.5em .5em .5em 0;max-width:100%}}</style></head><body>\n<h1>{t}</h1>\n<p class=\"note\">{p}</p>\n",
        t = escape(title),
        p = escape(preamble)
    );
    for s in sections {
        let _ = write!(out, "<section>\n<h2>{}</h2>\n<p>{}</p>\n", escape(&s.title), escape(&s.text));
        for f in &s.figures {
            out += &inline_svg(f);
            out += "\n";
        }
        let lines = |v: &[String]| v.iter().map(|l| escape(l)).collect::<Vec<_>>().join("<br>");
        if !s.hyperparameters.is_empty() {
            let _ = writeln!(out, "<p class=\"hp\">Hyperparameters used: {}</p>", lines(&s.hyperparameters));
        }
        let _ = write!(
            out,
            "<table><tr><th>the book</th><th>this run</th></tr><tr><td>{}</td><td>{}</td></tr></table>\n</section>\n",
            lines(&s.book),
            lines(&s.ours)
        );
    }
    out += interactive;
    out += "</body></html>\n";
    out
}
