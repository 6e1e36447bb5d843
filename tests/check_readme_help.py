"""The README's option list is `fastsse --help` itself: fails when one changed without the other."""
import subprocess
import sys

binary, readme = sys.argv[1], sys.argv[2]
help_text = subprocess.run([binary, "--help"], check=True, capture_output=True, text=True).stdout
with open(readme, encoding="utf-8") as f:
    text = f.read()
missing = [line for line in help_text.splitlines()[3:] if line.strip() and line not in text]
for line in missing:
    print(f"README.md lacks this line of fastsse --help: {line!r}")
sys.exit(1 if missing else 0)
