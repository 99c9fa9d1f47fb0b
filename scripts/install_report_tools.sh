#!/usr/bin/env bash
# Optional: the programs the report tests render with (headless Chromium for the HTML report,
# poppler-utils' pdftoppm/pdftotext/pdfinfo for the PDF case report). Debian/Ubuntu, root or sudo.
# Without them those three tests skip and say how to install them; nothing else needs them.
set -uo pipefail
missing=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || missing+=(chromium)
command -v pdftoppm >/dev/null || missing+=(poppler-utils)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null && sudo="sudo" || {
    echo "install_report_tools.sh: not root: the report rendering tests will skip (apt-get install ${missing[*]})" >&2; exit 0; }
fi
if ! command -v apt-get >/dev/null; then
  echo "install_report_tools.sh: no apt-get: the report rendering tests will skip (install ${missing[*]})" >&2
  exit 0
fi
log=$(mktemp)
if { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  echo "install_report_tools.sh: installed ${missing[*]}" >&2
else
  tail -n 3 "$log" >&2
  echo "install_report_tools.sh: could not install ${missing[*]}; the report rendering tests will skip" >&2
fi
exit 0
