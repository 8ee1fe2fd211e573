"""Generate the PDF documents of the example handbook (examples/handbook/).

The text of each PDF lives in this file, in a tiny Markdown-like markup:

    # Title            document title (first line; also the PDF's metadata title)
    ## Heading         section heading
    ### Heading        sub-heading
    - item             bullet (continuation lines are indented by two spaces)
    | a | b |          table row (first row of a block is the header)
    blank line         paragraph break (consecutive text lines form one paragraph)

Only the core Helvetica font is used, so the text must be ASCII (no smart quotes,
dashes or ligatures) and extracts cleanly with pypdf.

Usage (fpdf2 is not a project dependency; use any venv that has it):

    python3 -m venv /tmp/hbvenv && /tmp/hbvenv/bin/pip install fpdf2
    /tmp/hbvenv/bin/python scripts/make_handbook_pdf.py
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

HANDBOOK = Path(__file__).resolve().parent.parent / "examples" / "handbook"

# A fixed creation date keeps the output byte-for-byte reproducible.
CREATION_DATE = dt.datetime(2026, 1, 12, 9, 0, 0, tzinfo=dt.UTC)

BENEFITS = """\
# Benefits Overview 2026 (US Employees)

Northwind Labs, Inc. - People team
Last reviewed: 2026-01-05
Plan year: January 1 to December 31, 2026

This guide summarises the benefits Northwind Labs offers to employees in the United States.
Employees in Canada receive a separate Canada benefits guide from the People team. The official
plan documents from each provider take precedence over this summary. Questions: #people-help or
people@northwindlabs.com. Our benefits broker, Harbor Benefits Group, can also help with claims
problems at 1-800-555-0136.

## 1. Eligibility and enrollment

- All full-time employees (30 or more hours per week) and their dependents are eligible from the
  first day of employment.
- Enroll in BambooHR (Benefits tab) within 30 days of your start date. If you do not enroll, you
  are covered by the default medical plan (Aetna HDHP, employee only) and can change only at open
  enrollment.
- Open enrollment for the 2027 plan year runs from November 3 to November 17, 2026.
- After a qualifying life event (birth, adoption, marriage, divorce, loss of other coverage), you
  have 30 days to change your elections.

## 2. Medical insurance (Aetna)

You can choose between two medical plans, both with the Aetna Choice POS II national network.

| Plan feature | Aetna PPO | Aetna HDHP with HSA |
| Deductible (individual / family) | $500 / $1,000 | $1,700 / $3,400 |
| Out-of-pocket maximum (individual / family) | $3,000 / $6,000 | $4,000 / $8,000 |
| Primary care visit | $20 copay | 10% after deductible |
| Telehealth (Teladoc) | $0 | $0 |

Northwind pays 100% of the employee premium and 80% of the premium for dependents on both plans.

If you choose the HDHP, Northwind contributes to your Health Savings Account (HSA) at Fidelity:
$1,000 per year for individual coverage or $2,000 per year for family coverage, paid in equal
parts with each paycheck. You can add your own pre-tax contributions up to the IRS limit.

## 3. Vision insurance (VSP)

Vision coverage is through the VSP Choice plan. Northwind pays 100% of the premium for employees
and their dependents.

- Eye exam once every 12 months, $10 copay.
- Frames allowance of $200 every 24 months.
- Contact lens allowance of $200 every 12 months, instead of glasses.
- 15% discount on LASIK at VSP partner clinics.

## 4. Retirement: 401(k) plan (Fidelity)

- Northwind matches 100% of the first 4% of your base salary that you contribute.
- The company match vests immediately: it is yours from day one.
- New employees are automatically enrolled at a 3% contribution after 30 days unless they choose a
  different rate or opt out.
- Both traditional (pre-tax) and Roth contributions are available.
- Manage your account at netbenefits.fidelity.com.

## 5. Life and disability insurance (MetLife)

- Basic life and AD&D insurance: 2x your annual base salary, up to $500,000. Paid by Northwind.
- Supplemental life insurance for you, your spouse or partner, and children can be bought at group
  rates.
- Short-term disability: 60% of your base salary for up to 12 weeks, after a 7-day waiting period.
  Paid by Northwind.
- Long-term disability: 60% of your base salary, up to $10,000 per month, starting after 90 days
  of disability. Paid by Northwind.

## 6. Mental health and wellbeing

- Lyra Health: 16 free sessions per person per year of therapy or mental health coaching, for you
  and each of your dependents. Lyra also runs a 24/7 crisis line.
- Wellness stipend: $60 per month for gym or climbing memberships, fitness classes, sports
  equipment, or meditation apps. Submit receipts in Expensify under the category Wellness. Unused
  amounts reset at the end of each calendar year.

## 7. Learning and development

- Learning budget: $1,500 per employee per calendar year for courses, books, conference tickets,
  and certifications. Unused budget does not carry over.
- Single purchases over $300 need your manager's approval before you buy.
- Claim in Expensify under the category Learning. Travel to conferences is paid from your team's
  travel budget, not the learning budget, and follows the travel policy.
- Every employee can also take 2 learning days per year for self-study or workshops. Log them in
  BambooHR as Learning.

## 8. Commuter benefits (Portland office)

- Northwind pays 100% of an annual TriMet Hop pass for employees who work from the Portland office.
- Alternatively, you can set aside pre-tax money for parking through the Navia commuter account.
- Bike commuters receive $20 per month for bike maintenance and gear.

## 9. Time off and leave

Paid time off, sick leave, and holidays are described in the Time Off page (hr/leave-pto.md).
Parental leave is described in hr/parental-leave.md.

## 10. When coverage ends

Coverage ends on the last day of the month in which your employment ends. COBRA continuation
details are in the offboarding page (hr/offboarding.html).
"""

ACCEPTABLE_USE = """\
# Acceptable Use Policy

Northwind Labs, Inc. - Security team
Policy ID: SEC-POL-001, version 3.2
Effective: 2026-01-01
Last reviewed: 2026-01-12

## 1. Purpose and scope

This policy describes how Northwind Labs devices, accounts, networks, and data may be used. It
applies to all employees, contractors, and interns, on company devices and on personal devices
that access company data. It works together with the Data Classification Policy
(security/data-classification.md) and the Handling Secrets guide (security/secrets-handling.md).

Everyone must read and acknowledge this policy in BambooHR when they join, and again every year by
January 31.

## 2. Company devices

- Reasonable personal use of company laptops is allowed, as long as it does not interfere with
  your work or break this policy.
- Do not disable, uninstall, or tamper with security and management tools: CrowdStrike Falcon,
  Jamf Pro, Fleet, or the FileVault and LUKS disk encryption.
- You do not have permanent administrator rights on a company Mac. Use the Privileges app in Self
  Service to get administrator rights for 20 minutes at a time when you need them. Every use is
  logged.
- Family members, friends, and housemates may not use your company devices.

## 3. Accounts and passwords

- Never share your accounts, passwords, or MFA factors with anyone, including colleagues and IT
  staff.
- Use 1Password for all passwords (it/password-manager.md) and the MFA methods in it/mfa.md.
- Shared team accounts are allowed only when the vendor offers no individual accounts. They must
  be stored in a team vault in 1Password.

## 4. Prohibited activities

The following are not allowed on company devices, accounts, or networks:

- Mining cryptocurrency.
- Peer-to-peer file sharing (for example BitTorrent) and downloading pirated software, music, or
  films.
- Installing software from unknown sources, or unlicensed commercial software.
- Trying to get around security controls, for example using a personal VPN or proxy to avoid
  monitoring.
- Port scanning, penetration testing, or any other security testing of Northwind or customer
  systems without written approval from the Security team.
- Accessing, storing, or sending illegal, harassing, or sexually explicit material.
- Running a personal business or doing paid work for other organisations.

## 5. Removable media

USB storage devices (USB sticks, external hard drives, SD cards) are blocked on all company
laptops by CrowdStrike device control. Keyboards, mice, headsets, and monitors are not affected.
If you need removable storage, for example at a trade show, ask the Security team for an
encrypted, company-issued Kingston IronKey drive through the IT portal.

## 6. Email and messaging

- Do not set up automatic forwarding of your Northwind email to a personal address. Automatic
  forwarding to outside domains is blocked.
- Do not use personal email or personal messaging apps (such as WhatsApp or a personal Signal
  account) for company business. The only exception is coordinating an emergency when Slack and
  Google Workspace are unavailable, and no Confidential or Restricted data may be shared that way.

## 7. Generative AI tools

Use only the AI tools approved by Security, and only with the data levels they are approved for.
The list of approved tools and the rules for using them are on the AI Assistants and Prompt
Injection page (security/prompt-injection-awareness.md).

## 8. Personal devices

- Personal phones and tablets may access Slack, Gmail, Google Calendar, and Okta Verify only if
  they are enrolled: iPhones and iPads through Jamf user enrollment, Android phones with a work
  profile.
- Enrolled devices must use a passcode of at least 6 digits and run an operating system version
  that still receives security updates.
- Personal computers may not be used to access company systems. The exceptions are joining Zoom
  meetings and using the Fidelity, Aetna, and other benefits websites.

## 9. Travel to high-risk countries

- Before traveling to a country rated high risk by International SOS, get approval from the
  Security team.
- Do not take your regular laptop or an enrolled phone. IT issues a loaner laptop and phone with
  only the access you need. Request them at least 10 business days before you travel.
- Loaner devices are wiped when you return, without inspection of their content.
- If border officials inspect or take any device, comply, and report it to Security as soon as
  possible (security/incident-reporting.md).

## 10. Monitoring and privacy

Northwind monitors company devices, accounts, and networks to protect the company and our
customers. CrowdStrike Falcon collects information about processes, files, and network connections
on company laptops, and Okta and Google Workspace keep sign-in and activity logs.

Northwind does not record your screen, keystrokes, webcam, or microphone. Looking at a specific
employee's activity for an investigation requires approval from both the Head of Security and the
Head of People.

## 11. Violations

Violations of this policy may lead to removal of access and disciplinary action, up to and
including termination of employment. Report suspected violations to security@northwindlabs.com.
You can also report anonymously through the EthicsPoint hotline linked in BambooHR.
"""

DOCUMENTS = {
    "hr/benefits.pdf": BENEFITS,
    "security/acceptable-use.pdf": ACCEPTABLE_USE,
}


class HandbookPDF(FPDF):
    def __init__(self, doc_title: str) -> None:
        super().__init__(format="Letter")
        self.doc_title = doc_title
        self.set_margins(left=20, top=20, right=20)
        self.set_auto_page_break(auto=True, margin=20)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font("Helvetica", size=8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 6, f"Northwind Labs - Internal - {self.doc_title} - page {self.page_no()}", align="C")
        self.set_text_color(0, 0, 0)


def render(markup: str, out: Path) -> None:
    if not markup.isascii():
        bad = sorted({ch for ch in markup if not ch.isascii()})
        raise SystemExit(f"{out}: non-ASCII characters {bad!r}; the core fonts cannot show them")
    lines = markup.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise SystemExit(f"{out}: markup must start with '# Title'")
    title = lines[0][2:].strip()

    pdf = HandbookPDF(title)
    pdf.set_title(title)
    pdf.set_author("Northwind Labs")
    pdf.set_subject("Northwind Labs employee handbook")
    pdf.set_creator("scripts/make_handbook_pdf.py")
    pdf.set_creation_date(CREATION_DATE)
    pdf.add_page()

    width = pdf.epw
    pdf.set_font("Helvetica", style="B", size=18)
    pdf.multi_cell(width, 9, title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)

    # The lines after the title, up to the next blank line, are a metadata block (one per line).
    body = lines[1:]
    while body and not body[0].strip():
        body.pop(0)
    pdf.set_font("Helvetica", size=9.5)
    pdf.set_text_color(80, 80, 80)
    while body and body[0].strip():
        pdf.multi_cell(width, 5, body.pop(0).strip(), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(3)

    paragraph: list[str] = []  # lines of the current paragraph
    bullet: list[str] = []  # lines of the current bullet item
    table: list[list[str]] = []  # rows of the current table

    def flush() -> None:
        if paragraph:
            pdf.set_font("Helvetica", size=10.5)
            pdf.multi_cell(width, 5.6, " ".join(paragraph), align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2.5)
            paragraph.clear()
        if bullet:
            pdf.set_font("Helvetica", size=10.5)
            pdf.set_x(pdf.l_margin + 4)
            pdf.cell(4, 5.6, "-")
            pdf.multi_cell(width - 8, 5.6, " ".join(bullet), align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
            bullet.clear()
        if table:
            pdf.set_font("Helvetica", size=9.5)
            with pdf.table(
                width=width,
                line_height=5.4,
                text_align="LEFT",
                col_widths=(2, 1, 1) if len(table[0]) == 3 else None,
                headings_style=FontFace(emphasis="BOLD", fill_color=(230, 236, 245)),
            ) as t:
                for row in table:
                    r = t.row()
                    for cell in row:
                        r.cell(cell)
            pdf.ln(3)
            table.clear()

    for line in body:
        stripped = line.strip()
        if bullet and line.startswith("  ") and stripped:
            bullet.append(stripped)  # continuation of the bullet above
            continue
        if paragraph and stripped and not stripped.startswith(("#", "- ", "|")):
            paragraph.append(stripped)
            continue
        if table and stripped.startswith("|"):
            table.append([c.strip() for c in stripped.strip("|").split("|")])
            continue
        flush()
        if not stripped:
            continue
        if stripped.startswith("### "):
            pdf.ln(1)
            pdf.set_font("Helvetica", style="B", size=11)
            pdf.multi_cell(width, 6, stripped[4:], new_x="LMARGIN", new_y="NEXT")
        elif stripped.startswith("## "):
            pdf.ln(2)
            pdf.set_font("Helvetica", style="B", size=13)
            pdf.multi_cell(width, 7, stripped[3:], new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif stripped.startswith("- "):
            bullet.append(stripped[2:])
        elif stripped.startswith("|"):
            table.append([c.strip() for c in stripped.strip("|").split("|")])
        else:
            paragraph.append(stripped)
    flush()

    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HANDBOOK, help="handbook directory (default: %(default)s)"
    )
    args = parser.parse_args()
    for rel, markup in DOCUMENTS.items():
        target = args.out / rel
        render(markup, target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
