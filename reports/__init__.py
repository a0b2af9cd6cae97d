"""Periodic reports: SQL over the store, jinja2 templates, email.

- `reports.data`: the figures (`collect(con, request, now=...)` -> `ReportData`);
- `reports.charts`: inline SVG sparklines, bars and availability strips;
- `reports.render`: HTML and text (`render_html`, `render_text`, `subject`);
- `reports.settings`: the `reports:` section of agent.yaml (`ReportSpec`);
- `reports.generate`: config to request, period parsing, files under the data dir;
- `reports.deliver`: email through an email notifier's SMTP settings.
"""
