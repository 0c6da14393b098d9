"""``npsd demo``: a realistic organization, so a newcomer sees a living dashboard at once.

The organization sells a project tool to a dozen companies in four languages. It has four
surveys (a quarterly relationship survey, a post-onboarding survey, a support follow-up with a
public link, an old inactive beta survey), about a hundred contacts, three thousand answers over
the last fourteen months, invitations with every status a mail can end in, a few unsubscribes,
and an admin, an editor and a viewer who can sign in.

Two halves:

- :func:`plan` draws the history from a seed and a day, and nothing else: the same seed on the
  same day gives the same organization, so screenshots can be reproduced. The history ends the
  day before ``today``: nothing depends on the time of day. The NPS drifts (steady, then a dip
  the month a price change and an outage hit, then a recovery), two accounts stay unhappy,
  Mondays are a little grumpier than Fridays, weekends, August and December are quiet, and the
  comments are written in each contact's language and talk about what the score says (with a
  few that disagree, as real ones do).
- :func:`build` writes it through the services every client goes through: the companies and
  contacts API, the survey API, the bulk upsert of ``PUT /nps`` (so every roll-up, each
  contact's latest answer and each company's NPS is exact, dated by its ``dateAnswered``), the
  users and their passwords, unsubscribes. Two things no service writes, because they are
  history: invitations that were sent, reminded and answered in the past (rows shaped like
  ``collect.service.create_invitations`` writes them, their token hash included, linked to the
  answers the bulk path wrote, so ``analytics.metrics.response_rate`` counts them as the API
  does), and creation times in the past for surveys, companies, contacts and unsubscribes.
  No job is queued: the demo never sends a mail.

Re-running on an organization that exists is refused; ``reset=True`` first deletes it, but
only an organization this command made (recognised by its demo admin), all in one transaction.
Company and contact addresses use the reserved ``.example`` domain (RFC 2606), so no mail can
ever reach a real person; the answers without a company come from ``gmail.com`` addresses that
are never invited.
"""

from __future__ import annotations

import math
import random
import re
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from npsd.analytics.metrics import response_rate_percent
from npsd.analytics.nps import category
from npsd.auth import service as auth_service
from npsd.collect import service as collect
from npsd.contacts import service as contacts
from npsd.contacts.schemas import CompanyInput, EnduserInput
from npsd.digests import service as digests
from npsd.digests.schemas import DigestCreate
from npsd.followup import service as followup
from npsd.kit.config import Settings
from npsd.kit.errors import Conflict, NpsdError
from npsd.kit.ids import new_ids
from npsd.kit.models import (
    Enduser,
    Invitation,
    NpsRecord,
    NpsRollup,
    Organization,
    Unsubscribe,
    User,
)
from npsd.kit.timeutil import utcnow
from npsd.kit.validation import email_key
from npsd.records import service as records
from npsd.records.bulk import MAX_BULK
from npsd.surveys import service as surveys
from npsd.surveys.schemas import SurveyCreate

DEFAULT_ORG = "demo"
DEFAULT_SEED = 10  # issue #10
MONTHS = 14  # of history, ending yesterday
ROLES = ("admin", "editor", "viewer")

# ------------------------------------------------------------------------------------------ the cast

LANGUAGES = ("en", "de", "fr", "es")


@dataclass(frozen=True)
class CompanySpec:
    name: str
    domain: str
    language: str
    country: str
    industry: str
    plan: str
    arr: int
    size: int  # contacts
    mood: float  # NPS points added to every answer of its contacts (its level, when ``steady``)
    phase: str
    description: str
    complaints: dict[str, float] = field(default_factory=dict)  # topics it complains about most
    joined_months_ago: int | None = None  # a customer that started within the history
    rough_patch: float = 0.0  # extra NPS points during the dip
    steady: bool = False  # unhappy whatever the month: it shares neither the dip nor the recovery


COMPANIES = (
    CompanySpec(
        name="Brightwave Analytics",
        domain="brightwave.example",
        language="en",
        country="US",
        industry="Software",
        plan="Enterprise",
        arr=96_000,
        size=12,
        mood=12,
        phase="Expansion",
        description="Marketing analytics agency in Austin; rolling the tool out to its client teams.",
    ),
    CompanySpec(
        name="Halvorsen Maritime",
        domain="halvorsen-maritime.example",
        language="en",
        country="NO",
        industry="Shipping",
        plan="Business",
        arr=38_000,
        size=7,
        mood=4,
        phase="Adoption",
        description="Ship management company in Bergen; the fleet operations team plans dry-docks with us.",
    ),
    CompanySpec(
        name="Müller & Söhne Maschinenbau",
        domain="mueller-soehne.example",
        language="de",
        country="DE",
        industry="Manufacturing",
        plan="Enterprise",
        arr=72_000,
        size=10,
        mood=8,
        phase="Renewal",
        description="Family-owned machine builder near Stuttgart; engineering and service teams.",
    ),
    CompanySpec(
        name="Kranich Versicherung AG",
        domain="kranich-versicherung.example",
        language="de",
        country="DE",
        industry="Insurance",
        plan="Enterprise",
        arr=110_000,
        size=8,
        mood=-55,
        phase="At risk",
        description="Regional insurer in Hamburg; escalations about invoices and the price change.",
        complaints={"billing": 5.0, "price": 3.0, "support": 2.5},
        steady=True,
    ),
    CompanySpec(
        name="Alpenblick Reisen GmbH",
        domain="alpenblick-reisen.example",
        language="de",
        country="AT",
        industry="Travel",
        plan="Business",
        arr=24_000,
        size=6,
        mood=14,
        phase="Adoption",
        description="Tour operator in Innsbruck; product and sales teams plan their seasons with us.",
    ),
    CompanySpec(
        name="Atelier Lumière",
        domain="atelier-lumiere.example",
        language="fr",
        country="FR",
        industry="Design",
        plan="Starter",
        arr=9_000,
        size=5,
        mood=18,
        phase="Adoption",
        description="Lighting design studio in Lyon; a small team, heavy users of the client portal.",
    ),
    CompanySpec(
        name="Groupe Vallon",
        domain="groupe-vallon.example",
        language="fr",
        country="FR",
        industry="Construction",
        plan="Enterprise",
        arr=84_000,
        size=11,
        mood=-2,
        phase="Renewal",
        description="Construction group in Nantes; site managers and the PMO share their project plans.",
        complaints={"speed": 2.0, "usability": 1.5},
    ),
    CompanySpec(
        name="Hoteles Sol y Mar",
        domain="solymar-hoteles.example",
        language="es",
        country="ES",
        industry="Hospitality",
        plan="Business",
        arr=41_000,
        size=9,
        mood=6,
        phase="Expansion",
        description="Hotel chain on the Costa Brava; renovation projects and central purchasing.",
    ),
    CompanySpec(
        name="Ferretería Castell",
        domain="ferreteria-castell.example",
        language="es",
        country="ES",
        industry="Retail",
        plan="Starter",
        arr=7_500,
        size=5,
        mood=-8,
        phase="Adoption",
        description="Hardware wholesaler in Valencia; uses the tool to plan store openings.",
        complaints={"price": 2.0, "onboarding": 1.5},
    ),
    CompanySpec(
        name="Pinecrest Health",
        domain="pinecrest-health.example",
        language="en",
        country="US",
        industry="Healthcare",
        plan="Enterprise",
        arr=88_000,
        size=9,
        mood=10,
        phase="Renewal",
        description="Clinic network in Oregon; IT and facilities run their projects in the tool.",
    ),
    CompanySpec(
        name="Tidewater Freight",
        domain="tidewater-freight.example",
        language="en",
        country="US",
        industry="Logistics",
        plan="Business",
        arr=52_000,
        size=8,
        mood=-50,
        phase="At risk",
        description="Freight forwarder in Norfolk; waiting for the Dynamics integration, many bug reports.",
        complaints={"bugs": 4.0, "integrations": 4.0, "speed": 2.0},
        rough_patch=-12,
        steady=True,
    ),
    CompanySpec(
        name="Orbital Robotics",
        domain="orbital-robotics.example",
        language="en",
        country="GB",
        industry="Robotics",
        plan="Business",
        arr=45_000,
        size=6,
        mood=16,
        phase="Onboarding",
        description="Warehouse robotics start-up in Cambridge; signed five months ago.",
        joined_months_ago=5,
    ),
)
CSMS = ("Jana Roth", "Marco Bellini", "Aisha Khan", "Tom Lindqvist")


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


FIRST_NAMES = {
    "en": _words(
        "Emma Liam Olivia Noah Ava James Sophia Lucas Mia Ethan Grace Daniel Chloe Ryan Hannah Marcus Priya "
        "Samuel Zoe Aaron Nora Owen"
    ),
    "de": _words(
        "Lena Jonas Anna Lukas Marie Felix Sophie Paul Laura Maximilian Julia Tobias Katharina Niklas Hannah "
        "Florian Sabine Matthias Miriam Stefan"
    ),
    "fr": _words(
        "Camille Louis Léa Hugo Chloé Jules Manon Arthur Inès Théo Juliette Nathan Élodie Antoine Claire "
        "Mathieu Sarah Julien Margaux Nicolas"
    ),
    "es": _words(
        "Lucía Hugo Sofía Martín María Pablo Paula Daniel Carmen Alejandro Elena Javier Laura Diego Marta "
        "Sergio Irene Álvaro Noelia Adrián"
    ),
}
LAST_NAMES = {
    "en": _words(
        "Carter Bennett Hughes Patel Morgan Reed Foster Brooks Sullivan Hayes Walsh Kim Turner Price Coleman "
        "Ellis Grant Murphy Shaw Quinn"
    ),
    "de": _words(
        "Müller Schmidt Schneider Fischer Weber Wagner Becker Hoffmann Schäfer Koch Richter Klein Wolf "
        "Neumann Schwarz Zimmermann Krüger Hartmann Lange Brandt"
    ),
    "fr": _words(
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefèvre Michel "
        "Garnier David Bertrand Roux Vincent Fournier"
    ),
    "es": _words(
        "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín Jiménez Ruiz "
        "Hernández Díaz Moreno Álvarez Romero Navarro Torres Domínguez"
    ),
}
POSITIONS = _words(
    "Head of Operations|Project Manager|Project Manager|Team Lead|Operations Analyst|IT Administrator|"
    "Finance Manager|Product Owner|Customer Success Lead|Office Manager|Engineering Manager|Procurement Lead|"
    "Marketing Manager",
    "|",
)
# numbers from ranges kept for fiction or unassigned, per country
PHONES = {
    "US": "+1 202 555 01{0}{1}",
    "GB": "+44 20 7946 0{0}{1}{2}",
    "NO": "+47 55 50 {0}{1} {2}{3}",
    "DE": "+49 30 5550 {0}{1}{2}{3}",
    "AT": "+43 1 5550 {0}{1}{2}",
    "FR": "+33 1 99 00 {0}{1} {2}{3}",
    "ES": "+34 91 555 {0}{1} {2}{3}",
}
GMAIL_PEOPLE = (
    ("en", "US"),
    ("en", "GB"),
    ("de", "DE"),
    ("de", "DE"),
    ("fr", "FR"),
    ("fr", "BE"),
    ("es", "ES"),
    ("es", "MX"),
)

# ------------------------------------------------------------------------------------------ surveys

RELATIONSHIP, ONBOARDING, SUPPORT, BETA = "relationship", "onboarding", "support", "beta"


def survey_specs(start: date) -> dict[str, dict[str, Any]]:
    """The four surveys as ``POST /v1/nps-surveys`` bodies (every field the service takes)."""
    beta_start = _at(_add_months(start, 2), 9)
    return {
        RELATIONSHIP: {
            "name": "Quarterly relationship NPS",
            "description": "Sent to every active user of our customers at the start of each quarter.",
            "surveyType": "RELATIONSHIP",
            "isActive": True,
            "language": "en",
            "throttleDays": 80,
            "reminderAfterDays": 4,
            "thankYouMessage": "Thank you! Your answer goes straight to our product and success teams.",
            "startsAt": _at(start - timedelta(days=20), 0),
        },
        ONBOARDING: {
            "name": "Post-onboarding",
            "description": "Three weeks after a new user's first login.",
            "surveyType": "TRANSACTIONAL",
            "triggerEvent": "onboarding.completed",
            "followUpQuestion": "What could we have done to make getting started easier?",
            "isActive": True,
            "language": "en",
            "throttleDays": 30,
            "reminderAfterDays": 3,
            "thankYouMessage": "Thanks for helping us make the first weeks smoother for everyone.",
            "translations": {
                "de": {
                    "followUpQuestion": "Was hätten wir tun können, um Ihnen den Einstieg zu erleichtern?",
                    "thankYouMessage": "Danke, dass Sie uns helfen, die ersten Wochen für alle einfacher zu machen.",
                }
            },
        },
        SUPPORT: {
            "name": "Support follow-up",
            "description": "After a support ticket is closed: by e-mail, and through the link on the ticket page.",
            "surveyType": "TRANSACTIONAL",
            "triggerEvent": "ticket.closed",
            "question": "How likely are you to recommend our support team to a colleague?",
            "followUpQuestion": "What could we have done better with your request?",
            "isActive": True,
            "language": "en",
            "throttleDays": 14,
            "reminderAfterDays": None,
            "thankYouMessage": "Thank you! Your support lead reads every answer.",
        },
        BETA: {
            "name": "Reports beta feedback",
            "description": "Closed beta of the new reporting module; closed when reports went live.",
            "surveyType": "RELATIONSHIP",
            "question": "How likely are you to recommend the new reports to a colleague?",
            "followUpQuestion": "What would make the new reports more useful to you?",
            "isActive": False,
            "language": "en",
            "throttleDays": 30,
            "reminderAfterDays": 5,
            "thankYouMessage": "Thanks for testing the new reports with us!",
            "startsAt": beta_start,
            "endsAt": beta_start + timedelta(days=75),
        },
    }


INVITATION_ANSWER_RATE = {RELATIONSHIP: 0.47, ONBOARDING: 0.55, SUPPORT: 0.30, BETA: 0.42}
SOURCE_MOOD = {"email": 0.0, "link": -6.0, "in-app": 4.0, "import": 0.0}
SURVEY_MOOD = {RELATIONSHIP: 0.0, ONBOARDING: 8.0, SUPPORT: 2.0, BETA: -4.0, None: 0.0}

# NPS the month it was `index` months before the current one: steady, a dip seven months ago (the
# price change, and an outage), a recovery over the following months.
MONTH_NPS = (44, 42, 38, 31, 22, 10, -4, -14, 34, 34, 35, 33, 31, 30, 28)
DIP_MONTHS = (7, 6)
WEEKDAY_VOLUME = (1.15, 1.1, 1.05, 1.0, 0.85, 0.22, 0.18)  # Monday first
WEEKDAY_MOOD = (-3.0, 0.0, 0.0, 1.0, 3.0, 2.0, 2.0)
MONTH_VOLUME = {1: 1.1, 7: 0.9, 8: 0.7, 12: 0.72}
TICKETS_PER_DAY = 14.0
IN_APP_PER_DAY = 4.0
IMPORT_PER_DAY = 3.0
IMPORT_DAYS = 80  # answers imported from the tool used before npsd, at the start of the history

# ------------------------------------------------------------------------------------------ comments

PRAISE_TOPICS = (
    "ease",
    "support",
    "reliability",
    "reporting",
    "integrations",
    "value",
    "onboarding",
    "team",
    "speed",
)
COMPLAINT_TOPICS = (
    "price",
    "support",
    "speed",
    "bugs",
    "onboarding",
    "integrations",
    "billing",
    "usability",
    "outage",
    "reporting",
)

PRAISE: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "ease": (
            "Really easy to use, the whole team picked it up in a day.",
            "Clean interface, everything is where I expect it to be.",
            "Simple to set up and simple to use.",
        ),
        "support": (
            "Support is fantastic: fast, friendly and they actually solve the problem.",
            "Whenever we have a question, the support team answers within the hour.",
            "Great support, they even followed up a week later to check everything was fine.",
        ),
        "reliability": (
            "Rock solid. I can't remember the last time it was down.",
            "It just works, every single day.",
        ),
        "reporting": (
            "The dashboards save me hours every week.",
            "Reporting is excellent, our management loves the monthly export.",
        ),
        "integrations": (
            "The Salesforce integration works flawlessly.",
            "Love the Slack and HubSpot integrations.",
        ),
        "value": ("Great value for the money.", "Worth every cent we pay for it."),
        "onboarding": (
            "Onboarding was smooth and well organised.",
            "Our onboarding manager was brilliant and very patient with us.",
        ),
        "team": (
            "Our account manager really understands our business.",
            "You can tell the team listens to feedback.",
        ),
        "speed": ("Fast, even with our largest projects.", "The new version is noticeably faster."),
    },
    "de": {
        "ease": (
            "Sehr einfach zu bedienen, das ganze Team war nach einem Tag startklar.",
            "Übersichtliche Oberfläche, alles ist da, wo ich es erwarte.",
            "Schnell eingerichtet und leicht zu bedienen.",
        ),
        "support": (
            "Der Support ist hervorragend: schnell, freundlich und kompetent.",
            "Auf unsere Fragen bekommen wir immer innerhalb einer Stunde eine Antwort.",
            "Toller Support, man hat sich eine Woche später sogar noch einmal bei uns gemeldet.",
        ),
        "reliability": (
            "Läuft absolut stabil, Ausfälle kennen wir nicht.",
            "Funktioniert einfach, jeden Tag.",
        ),
        "reporting": (
            "Die Dashboards sparen mir jede Woche Stunden.",
            "Die Auswertungen sind klasse, unsere Geschäftsführung liebt den Monatsbericht.",
        ),
        "integrations": (
            "Die SAP-Anbindung funktioniert reibungslos.",
            "Die Integration mit Slack und HubSpot ist super.",
        ),
        "value": ("Sehr gutes Preis-Leistungs-Verhältnis.", "Jeden Euro wert, den wir dafür zahlen."),
        "onboarding": (
            "Das Onboarding war gut organisiert und lief reibungslos.",
            "Unsere Onboarding-Managerin war großartig und sehr geduldig mit uns.",
        ),
        "team": (
            "Unser Ansprechpartner versteht unser Geschäft wirklich.",
            "Man merkt, dass das Team auf Feedback hört.",
        ),
        "speed": ("Schnell, auch bei unseren größten Projekten.", "Die neue Version ist spürbar schneller."),
    },
    "fr": {
        "ease": (
            "Très simple à utiliser, toute l'équipe l'a pris en main en une journée.",
            "Interface claire, tout est là où on l'attend.",
            "Rapide à mettre en place et facile à utiliser.",
        ),
        "support": (
            "Le support est excellent : rapide, aimable et efficace.",
            "Quand nous avons une question, le support nous répond dans l'heure.",
            "Super support, ils nous ont même recontactés une semaine plus tard pour vérifier que tout allait bien.",
        ),
        "reliability": (
            "Très fiable, je ne me souviens pas de la dernière panne.",
            "Ça marche, tout simplement, tous les jours.",
        ),
        "reporting": (
            "Les tableaux de bord me font gagner des heures chaque semaine.",
            "Les rapports sont excellents, la direction adore l'export mensuel.",
        ),
        "integrations": (
            "L'intégration avec Salesforce fonctionne parfaitement.",
            "Les intégrations avec Slack et HubSpot sont très pratiques.",
        ),
        "value": ("Excellent rapport qualité-prix.", "Il vaut vraiment son prix."),
        "onboarding": (
            "La prise en main a été fluide et très bien organisée.",
            "Notre chargée d'accompagnement a été formidable et très patiente avec nous.",
        ),
        "team": (
            "Notre chargé de compte comprend vraiment notre métier.",
            "On sent que l'équipe écoute les retours des clients.",
        ),
        "speed": (
            "Rapide, même sur nos plus gros projets.",
            "La nouvelle version est nettement plus rapide.",
        ),
    },
    "es": {
        "ease": (
            "Muy fácil de usar, todo el equipo lo aprendió en un día.",
            "Interfaz clara, todo está donde lo esperas.",
            "Rápido de configurar y fácil de usar.",
        ),
        "support": (
            "El soporte es fantástico: rápido, amable y resolutivo.",
            "Cuando tenemos una duda, el equipo de soporte nos responde en menos de una hora.",
            "Gran soporte, incluso nos llamaron una semana después para ver si todo iba bien.",
        ),
        "reliability": (
            "Muy estable, no recuerdo la última caída.",
            "Simplemente funciona, todos los días.",
        ),
        "reporting": (
            "Los paneles me ahorran horas cada semana.",
            "Los informes son excelentes, a la dirección le encanta el informe mensual.",
        ),
        "integrations": (
            "La integración con Salesforce funciona perfectamente.",
            "Las integraciones con Slack y HubSpot son geniales.",
        ),
        "value": ("Muy buena relación calidad-precio.", "Vale cada euro que pagamos."),
        "onboarding": (
            "La puesta en marcha fue ágil y estuvo muy bien organizada.",
            "Nuestra responsable de implantación fue estupenda y muy paciente con nosotros.",
        ),
        "team": (
            "Nuestro gestor de cuenta entiende de verdad nuestro negocio.",
            "Se nota que el equipo escucha a los clientes.",
        ),
        "speed": (
            "Rápido, incluso con nuestros proyectos más grandes.",
            "La nueva versión es mucho más rápida.",
        ),
    },
}

COMPLAINTS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "price": (
            "Too expensive for what we actually use.",
            "The price increase this year was hard to justify internally.",
            "The per-seat pricing punishes us for growing.",
        ),
        "support": (
            "Support takes days to reply, and the first answer is usually a canned one.",
            "I had to explain the same issue to three different people.",
        ),
        "speed": (
            "The app has become really slow, reports take minutes to load.",
            "Search is painfully slow on large projects.",
        ),
        "bugs": (
            "Too many bugs since the last release.",
            "Exports fail at random and we have to retry them.",
            "Notifications are unreliable, we keep missing updates.",
        ),
        "onboarding": (
            "Onboarding was confusing and we were left on our own after the kickoff.",
            "The setup took weeks longer than we were promised.",
        ),
        "integrations": (
            "Still no integration with Microsoft Dynamics, which is a deal breaker for us.",
            "The Jira sync breaks every few weeks.",
            "We need a proper API for our data warehouse.",
        ),
        "billing": (
            "We were billed twice and it took a month to get a refund.",
            "The invoices are confusing and never match our purchase order.",
        ),
        "usability": (
            "The new navigation is confusing, I can't find anything anymore.",
            "Far too many clicks for simple tasks.",
        ),
        "outage": (
            "The outage a few weeks ago cost us a full day of work.",
            "Downtime during our busiest week, and no status updates at all.",
        ),
        "reporting": ("Reporting is too limited, we export everything to Excel anyway.",),
    },
    "de": {
        "price": (
            "Für das, was wir tatsächlich nutzen, viel zu teuer.",
            "Die Preiserhöhung in diesem Jahr war intern kaum zu rechtfertigen.",
            "Das Preismodell pro Nutzer bestraft uns dafür, dass wir wachsen.",
        ),
        "support": (
            "Der Support braucht Tage für eine Antwort, und die erste ist meist ein Textbaustein.",
            "Ich musste dasselbe Problem drei verschiedenen Leuten erklären.",
        ),
        "speed": (
            "Die Anwendung ist sehr langsam geworden, Berichte laden minutenlang.",
            "Die Suche ist bei großen Projekten quälend langsam.",
        ),
        "bugs": (
            "Seit dem letzten Release gibt es viel zu viele Fehler.",
            "Exporte schlagen zufällig fehl und müssen wiederholt werden.",
            "Die Benachrichtigungen kommen nicht zuverlässig an, wir verpassen ständig Änderungen.",
        ),
        "onboarding": (
            "Das Onboarding war chaotisch, nach dem Kick-off waren wir auf uns allein gestellt.",
            "Die Einrichtung hat Wochen länger gedauert als versprochen.",
        ),
        "integrations": (
            "Immer noch keine Anbindung an DATEV, das ist für uns ein K.-o.-Kriterium.",
            "Die Jira-Synchronisation bricht alle paar Wochen ab.",
            "Wir brauchen eine richtige API für unser Data Warehouse.",
        ),
        "billing": (
            "Wir wurden doppelt belastet und haben einen Monat auf die Gutschrift gewartet.",
            "Die Rechnungen sind unverständlich und passen nie zu unserer Bestellung.",
        ),
        "usability": (
            "Die neue Navigation ist verwirrend, ich finde nichts mehr.",
            "Viel zu viele Klicks für einfache Aufgaben.",
        ),
        "outage": (
            "Der Ausfall vor ein paar Wochen hat uns einen ganzen Arbeitstag gekostet.",
            "Ein Ausfall in unserer wichtigsten Woche, und keine einzige Statusmeldung.",
        ),
        "reporting": ("Die Berichte sind zu eingeschränkt, wir exportieren ohnehin alles nach Excel.",),
    },
    "fr": {
        "price": (
            "Beaucoup trop cher pour ce que nous utilisons vraiment.",
            "La hausse de prix de cette année a été difficile à justifier en interne.",
            "La tarification par utilisateur nous pénalise quand nous grandissons.",
        ),
        "support": (
            "Le support met des jours à répondre, et la première réponse est souvent un copier-coller.",
            "J'ai dû expliquer le même problème à trois personnes différentes.",
        ),
        "speed": (
            "L'application est devenue très lente, les rapports mettent des minutes à charger.",
            "La recherche est d'une lenteur pénible sur les gros projets.",
        ),
        "bugs": (
            "Trop de bugs depuis la dernière mise à jour.",
            "Les exports échouent au hasard et il faut les relancer.",
            "Les notifications ne sont pas fiables, nous ratons des mises à jour.",
        ),
        "onboarding": (
            "La mise en route était confuse et nous avons été livrés à nous-mêmes après le lancement.",
            "La mise en place a pris des semaines de plus que prévu.",
        ),
        "integrations": (
            "Toujours pas d'intégration avec Sage, c'est rédhibitoire pour nous.",
            "La synchronisation avec Jira casse toutes les deux ou trois semaines.",
            "Il nous faut une vraie API pour notre entrepôt de données.",
        ),
        "billing": (
            "Nous avons été facturés deux fois et il a fallu un mois pour être remboursés.",
            "Les factures sont incompréhensibles et ne correspondent jamais à notre bon de commande.",
        ),
        "usability": (
            "La nouvelle navigation est déroutante, je ne trouve plus rien.",
            "Beaucoup trop de clics pour des tâches simples.",
        ),
        "outage": (
            "La panne d'il y a quelques semaines nous a coûté une journée entière de travail.",
            "Une panne pendant notre semaine la plus chargée, et aucune information sur la situation.",
        ),
        "reporting": ("Les rapports sont trop limités, nous exportons tout vers Excel de toute façon.",),
    },
    "es": {
        "price": (
            "Demasiado caro para lo que realmente usamos.",
            "La subida de precio de este año fue difícil de justificar internamente.",
            "El precio por usuario nos penaliza por crecer.",
        ),
        "support": (
            "El soporte tarda días en contestar y la primera respuesta suele ser automática.",
            "Tuve que explicar el mismo problema a tres personas distintas.",
        ),
        "speed": (
            "La aplicación se ha vuelto muy lenta, los informes tardan minutos en cargar.",
            "La búsqueda es desesperadamente lenta en los proyectos grandes.",
        ),
        "bugs": (
            "Demasiados errores desde la última versión.",
            "Las exportaciones fallan sin motivo y hay que repetirlas.",
            "Las notificaciones no son fiables, se nos escapan cambios importantes.",
        ),
        "onboarding": (
            "La puesta en marcha fue confusa y después del arranque nos dejaron solos.",
            "La configuración tardó semanas más de lo prometido.",
        ),
        "integrations": (
            "Sigue sin haber integración con A3, y para nosotros es imprescindible.",
            "La sincronización con Jira falla cada pocas semanas.",
            "Necesitamos una API de verdad para nuestro almacén de datos.",
        ),
        "billing": (
            "Nos cobraron dos veces y tardaron un mes en devolvernos el dinero.",
            "Las facturas son confusas y nunca cuadran con nuestro pedido.",
        ),
        "usability": (
            "La nueva navegación es confusa, ya no encuentro nada.",
            "Demasiados clics para tareas sencillas.",
        ),
        "outage": (
            "La caída de hace unas semanas nos costó un día entero de trabajo.",
            "Una caída del servicio en nuestra semana más importante y sin ninguna información.",
        ),
        "reporting": ("Los informes son muy limitados, al final lo exportamos todo a Excel.",),
    },
}

SHORT: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "promoter": ("Love it!", "Great product.", "Excellent, thank you!"),
        "passive": ("Does the job.", "Good overall.", "Fine, nothing special."),
        "detractor": ("Not happy.", "Disappointing.", "Not what we were promised."),
    },
    "de": {
        "promoter": ("Super Tool!", "Absolut empfehlenswert.", "Sehr zufrieden, danke!"),
        "passive": ("Insgesamt okay.", "Erfüllt seinen Zweck.", "Ganz gut, aber nichts Besonderes."),
        "detractor": ("Nicht zufrieden.", "Enttäuschend.", "Nicht das, was uns versprochen wurde."),
    },
    "fr": {
        "promoter": ("Top, merci !", "Je recommande.", "Très satisfaits, merci !"),
        "passive": ("Correct dans l'ensemble.", "Fait le travail.", "Bien, sans plus."),
        "detractor": ("Pas satisfait.", "Décevant.", "Ce n'est pas ce qu'on nous avait promis."),
    },
    "es": {
        "promoter": ("¡Excelente!", "Lo recomiendo.", "Muy contentos, ¡gracias!"),
        "passive": ("Está bien en general.", "Cumple su función.", "Bien, sin más."),
        "detractor": ("No estoy satisfecho.", "Decepcionante.", "No es lo que nos prometieron."),
    },
}

CLOSERS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "promoter": ("Keep it up!", "Thanks to the whole team!", "Highly recommended."),
        "detractor": ("We are looking at alternatives.", "Please fix this.", "Very disappointed."),
    },
    "de": {
        "promoter": ("Weiter so!", "Danke an das ganze Team!", "Klare Empfehlung."),
        "detractor": (
            "Wir schauen uns nach Alternativen um.",
            "Bitte dringend beheben.",
            "Sehr enttäuschend.",
        ),
    },
    "fr": {
        "promoter": ("Continuez comme ça !", "Merci à toute l'équipe !", "Je le recommande vivement."),
        "detractor": (
            "Nous étudions d'autres solutions.",
            "Merci de corriger cela rapidement.",
            "Très déçus.",
        ),
    },
    "es": {
        "promoter": ("¡Seguid así!", "¡Gracias a todo el equipo!", "Muy recomendable."),
        "detractor": (
            "Estamos buscando alternativas.",
            "Por favor, arreglad esto pronto.",
            "Muy decepcionados.",
        ),
    },
}
COMMENT_RATE = {"promoter": 0.58, "passive": 0.64, "detractor": 0.8}
DISAGREEING = 0.03  # of the comments of promoters and detractors: one that reads like the other side

# ------------------------------------------------------------------------------------------ the plan


@dataclass
class PlannedContact:
    email: str
    first_name: str
    last_name: str
    language: str
    country: str
    company: int | None  # index in COMPANIES
    position: str | None
    phone: str | None
    primary: bool
    since: date  # first day it may answer
    left: date | None  # left its company: mail bounces from then on
    activity: float
    mood: float
    responsiveness: float


@dataclass
class PlannedAnswer:
    contact: int
    score: int
    comment: str | None
    survey: str | None
    source: str
    answered: datetime
    sent: datetime | None = None
    reminded: datetime | None = None
    source_id: str | None = None
    custom: dict[str, Any] | None = None


@dataclass
class PlannedInvitation:
    contact: int
    survey: str
    status: str
    created: datetime
    send_at: datetime
    sent: datetime | None = None
    reminded: datetime | None = None
    answered: datetime | None = None
    cancelled: datetime | None = None
    failed_reason: str | None = None
    answer: int | None = None  # index in Plan.answers
    properties: dict[str, Any] | None = None


@dataclass
class PlannedUnsubscribe:
    contact: int
    at: datetime
    source: str
    invitation: int


@dataclass
class Plan:
    """Everything :func:`build` writes, drawn by :func:`plan`; only its ids are left to the database."""

    seed: int
    today: date
    start: date
    surveys: dict[str, dict[str, Any]]
    contacts: list[PlannedContact]
    answers: list[PlannedAnswer]
    invitations: list[PlannedInvitation]
    unsubscribes: list[PlannedUnsubscribe]


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, min(day.day, 28))


def _at(day: date, hour: float) -> datetime:
    """``day`` at ``hour`` (UTC, whole seconds)."""
    return datetime.combine(day, time()) + timedelta(seconds=round(hour * 3600))


def _months_before(day: date, today: date) -> int:
    return (today.year * 12 + today.month) - (day.year * 12 + day.month)


def _ascii(text: str) -> str:
    text = text.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
    text = text.replace("Ä", "Ae").replace("Ö", "Oe").replace("Ü", "Ue")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: enough for the small daily means used here."""
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class _Draw:
    """The random choices of one plan, from one seeded generator, always in the same order."""

    def __init__(self, seed: int, today: date) -> None:
        self.rng = random.Random(seed)
        self.today = today

    def contacts(self, start: date) -> list[PlannedContact]:
        rng = self.rng
        out: list[PlannedContact] = []
        taken: set[str] = set()
        for index, spec in enumerate(COMPANIES):
            joined = _add_months(self.today, -spec.joined_months_ago) if spec.joined_months_ago else None
            firsts = list(FIRST_NAMES[spec.language])
            rng.shuffle(firsts)
            for n in range(spec.size):
                first, last = firsts[n % len(firsts)], rng.choice(LAST_NAMES[spec.language])
                local = f"{_ascii(first)}.{_ascii(last)}".replace("-", "")
                email = f"{local}@{spec.domain}"
                if email in taken:
                    email = f"{_ascii(first)}.{_ascii(last)[0]}{n}@{spec.domain}"
                taken.add(email)
                if joined is not None:
                    since = joined + timedelta(days=rng.randrange(0, 20))
                elif rng.random() < 0.75:
                    since = start - timedelta(days=rng.randrange(30, 900))
                else:  # joined its company's team within the history
                    since = start + timedelta(days=rng.randrange(20, (self.today - start).days - 40))
                out.append(
                    PlannedContact(
                        email=email,
                        first_name=first,
                        last_name=last,
                        language=spec.language,
                        country=spec.country,
                        company=index,
                        position="Managing Director" if n == 0 and spec.size <= 6 else rng.choice(POSITIONS),
                        phone=self.phone(spec.country) if rng.random() < 0.7 else None,
                        primary=n == 0,
                        since=since,
                        left=None,
                        activity=rng.lognormvariate(0, 0.6) * (2.0 if n == 0 else 1.0),
                        mood=rng.gauss(0, 12),
                        responsiveness=min(max(rng.gauss(1.0, 0.25), 0.4), 1.6),
                    )
                )
        # three people leave their company in the second half: archived, their mail bounces
        leavers = [i for i, c in enumerate(out) if not c.primary and c.since < start]
        for i in rng.sample(leavers, 3):
            out[i].left = start + timedelta(days=rng.randrange(220, (self.today - start).days - 25))
        for language, country in GMAIL_PEOPLE:
            first, last = rng.choice(FIRST_NAMES[language]), rng.choice(LAST_NAMES[language])
            out.append(
                PlannedContact(
                    email=f"{_ascii(first)}.{_ascii(last)}{rng.randrange(10, 99)}@gmail.com".replace("-", ""),
                    first_name=first,
                    last_name=last,
                    language=language,
                    country=country,
                    company=None,
                    position=None,
                    phone=None,
                    primary=False,
                    since=start - timedelta(days=rng.randrange(30, 400)),
                    left=None,
                    activity=rng.lognormvariate(0, 0.5),
                    mood=rng.gauss(0, 12),
                    responsiveness=1.0,
                )
            )
        return out

    def phone(self, country: str) -> str:
        return PHONES[country].format(*(self.rng.randrange(10) for _ in range(4)))

    def score(self, contact: PlannedContact, when: datetime, source: str, survey: str | None) -> int:
        months = _months_before(when.date(), self.today)
        spec = COMPANIES[contact.company] if contact.company is not None else None
        month = 0.0 if spec is not None and spec.steady else MONTH_NPS[min(months, len(MONTH_NPS) - 1)]
        target = (
            month + contact.mood + SOURCE_MOOD[source] + SURVEY_MOOD[survey] + WEEKDAY_MOOD[when.weekday()]
        )
        if spec is not None:
            target += spec.mood + (spec.rough_patch if months in (7, 6, 5) else 0.0)
        target = min(max(target, -92.0), 92.0) / 100
        passives = 0.27
        promoters = max((1 - passives + target) / 2, 0.02)
        detractors = max((1 - passives - target) / 2, 0.02)
        draw = self.rng.random() * (promoters + passives + detractors)
        if draw < promoters:
            return 10 if self.rng.random() < 0.55 else 9
        if draw < promoters + passives:
            return 8 if self.rng.random() < 0.55 else 7
        return self.rng.choices(range(7), weights=(3, 2, 3, 5, 7, 12, 18))[0]

    def comment(
        self, contact: PlannedContact, score: int, when: datetime, survey: str | None, source: str
    ) -> str | None:
        """A comment in the contact's language that fits the score, or None (about a third)."""
        rng, lang = self.rng, contact.language
        kind = category(score)
        if rng.random() >= COMMENT_RATE[kind]:
            return None
        if kind != "passive" and rng.random() < DISAGREEING:
            kind = "detractor" if kind == "promoter" else "promoter"  # a misread scale, a grudging fan
        months = _months_before(when.date(), self.today)
        shape = rng.random()
        if kind == "promoter":
            topics = self.praise_topics(survey, source)
            if shape < 0.1:
                return rng.choice(SHORT[lang]["promoter"])
            first = self.pick(PRAISE[lang], topics)
            if shape < 0.55:
                return first
            if shape < 0.85:
                return f"{first} {self.pick(PRAISE[lang], topics, avoid=first)}"
            return f"{first} {rng.choice(CLOSERS[lang]['promoter'])}"
        complaints = self.complaint_topics(contact, survey, source, months)
        if kind == "passive":
            if shape < 0.2:
                return rng.choice(SHORT[lang]["passive"])
            gripe = self.pick(COMPLAINTS[lang], complaints)
            if shape < 0.5:
                return f"{rng.choice(SHORT[lang]['passive'])} {gripe}"
            return f"{self.pick(PRAISE[lang], self.praise_topics(survey, source))} {gripe}"
        if shape < 0.1:
            return rng.choice(SHORT[lang]["detractor"])
        first = self.pick(COMPLAINTS[lang], complaints)
        if shape < 0.55:
            return first
        if shape < 0.85:
            return f"{first} {self.pick(COMPLAINTS[lang], complaints, avoid=first)}"
        return f"{first} {rng.choice(CLOSERS[lang]['detractor'])}"

    def pick(self, bank: dict[str, tuple[str, ...]], weights: dict[str, float], avoid: str = "") -> str:
        topics = list(weights)
        for _ in range(4):
            sentence = self.rng.choice(
                bank[self.rng.choices(topics, weights=[weights[t] for t in topics])[0]]
            )
            if sentence != avoid:
                return sentence
        return sentence

    @staticmethod
    def praise_topics(survey: str | None, source: str) -> dict[str, float]:
        weights = dict.fromkeys(PRAISE_TOPICS, 1.0)
        if survey == SUPPORT:
            weights["support"] = 8.0
        elif survey == ONBOARDING:
            weights.update(onboarding=6.0, ease=3.0)
        elif survey == BETA:
            weights.update(reporting=6.0, speed=2.0)
        elif source == "in-app":
            weights.update(ease=3.0, reporting=2.0, speed=2.0)
        return weights

    @staticmethod
    def complaint_topics(
        contact: PlannedContact, survey: str | None, source: str, months: int
    ) -> dict[str, float]:
        weights = dict.fromkeys(COMPLAINT_TOPICS, 1.0)
        weights.update(price=1.5, bugs=1.5, outage=0.0)
        if months in DIP_MONTHS:
            weights.update(outage=5.0, price=4.0, speed=2.0)
        elif months in (5, 4):
            weights.update(price=3.0, speed=2.0, billing=1.5)
        if contact.company is not None:
            for topic, extra in COMPANIES[contact.company].complaints.items():
                weights[topic] += extra
        if survey == SUPPORT:
            weights["support"] += 6.0
        elif survey == ONBOARDING:
            weights["onboarding"] += 6.0
        elif survey == BETA:
            weights.update(reporting=weights["reporting"] + 4.0, bugs=weights["bugs"] + 2.0)
        elif source == "in-app":
            weights.update(usability=weights["usability"] + 2.0, speed=weights["speed"] + 1.0)
        return weights


class _Intent(NamedTuple):
    """An invitation about to be sent; :func:`_invitations` decides what became of it."""

    send_at: datetime
    contact: int
    survey: str
    created: datetime
    properties: dict[str, Any] | None


def plan(seed: int = DEFAULT_SEED, today: date | None = None) -> Plan:
    """The demo history for ``seed``, ending the day before ``today`` (UTC; default: today).

    A pure function of its arguments: the same seed on the same day gives the same plan.
    """
    today = today or utcnow().date()
    draw = _Draw(seed, today)
    rng = draw.rng
    start = _add_months(today, -MONTHS)
    end = datetime.combine(today, time())  # nothing happens from today on
    specs = survey_specs(start)
    people = draw.contacts(start)
    company_people = [i for i, c in enumerate(people) if c.company is not None]
    gmail_people = [i for i, c in enumerate(people) if c.company is None]
    answers: list[PlannedAnswer] = []
    intents: list[_Intent] = []
    last_support_invite: dict[int, date] = {}
    ticket = 10_480

    def answer(i: int, when: datetime, source: str, survey: str | None, **extra: Any) -> None:
        score = draw.score(people[i], when, source, survey)
        text = draw.comment(people[i], score, when, survey, source)
        answers.append(PlannedAnswer(i, score, text, survey, source, when, **extra))

    def active(i: int, day: date) -> bool:
        c = people[i]
        return c.since <= day and (c.left is None or day < c.left)

    beta = specs[BETA]
    beta_people = rng.sample([i for i in company_people if people[i].since < beta["startsAt"].date()], 38)
    day = start
    while day < today:
        volume = WEEKDAY_VOLUME[day.weekday()] * MONTH_VOLUME.get(day.month, 1.0)
        present = [i for i in company_people if active(i, day)]
        weights = [people[i].activity for i in present]
        # support tickets: an e-mail survey once the contact is not throttled, else maybe the link
        for _ in range(_poisson(rng, TICKETS_PER_DAY * volume)):
            closed = _at(day, rng.uniform(7, 18.5))
            ticket += rng.randrange(1, 4)
            props = {"ticketId": f"T-{ticket}", "channel": rng.choice(("e-mail", "chat", "chat", "phone"))}
            if rng.random() < 0.05:
                i = rng.choice(gmail_people)
            else:
                i = rng.choices(present, weights=weights)[0]
                last = last_support_invite.get(i)
                if (
                    last is None or (day - last).days >= specs[SUPPORT]["throttleDays"]
                ) and rng.random() < 0.8:
                    last_support_invite[i] = day
                    sent = closed + timedelta(minutes=15)
                    intents.append(_Intent(sent, i, SUPPORT, sent, props))
                    continue
            when = closed + timedelta(minutes=rng.randrange(2, 240))
            if rng.random() < 0.38 and when < end:
                answer(i, when, "link", SUPPORT, custom=props)
        # the in-app widget: no survey
        for _ in range(_poisson(rng, IN_APP_PER_DAY * volume)):
            i = rng.choice(gmail_people) if rng.random() < 0.08 else rng.choices(present, weights=weights)[0]
            page = rng.choice(("/projects", "/projects", "/board", "/reports", "/timeline", "/settings"))
            answer(i, _at(day, rng.uniform(6, 20)), "in-app", None, custom={"page": page})
        # answers of the previous tool, imported when npsd was set up: no survey, a sourceId each
        if (day - start).days < IMPORT_DAYS:
            for _ in range(_poisson(rng, IMPORT_PER_DAY * volume)):
                i = rng.choices(present, weights=weights)[0]
                answer(
                    i, _at(day, rng.uniform(8, 18)), "import", None, source_id=f"legacy-{len(answers):05d}"
                )
        # the relationship survey goes out on the first Tuesday of each quarter
        if day.month in (1, 4, 7, 10) and day.day <= 7 and day.weekday() == 1:
            wave = {"wave": f"{day.year}-Q{(day.month + 2) // 3}"}
            created = _at(day - timedelta(days=3), 15)
            for n, i in enumerate(c for c in company_people if people[c].since <= day - timedelta(days=14)):
                intents.append(
                    _Intent(_at(day, 8) + timedelta(seconds=2 * n), i, RELATIONSHIP, created, wave)
                )
        # three weeks after a new user started: the post-onboarding survey
        for i in company_people:
            if people[i].since + timedelta(days=21) == day and people[i].since >= start:
                sent = _at(day, 9.5) + timedelta(minutes=rng.randrange(0, 90))
                intents.append(_Intent(sent, i, ONBOARDING, sent, None))
        if day == beta["startsAt"].date():  # the beta testers, on the first day of the beta
            opened, cohort = beta["startsAt"], {"cohort": "reports-beta"}
            for n, i in enumerate(beta_people):
                intents.append(
                    _Intent(opened + timedelta(seconds=3 * n), i, BETA, opened - timedelta(days=1), cohort)
                )
        day += timedelta(days=1)

    invitations, unsubscribes = _invitations(draw, people, specs, intents, answers, end, answer)
    return Plan(seed, today, start, specs, people, answers, invitations, unsubscribes)


BOUNCE = "550 5.1.1 <{email}>: Recipient address rejected: User unknown in virtual mailbox table"
SOFT_FAILURES = (
    "552 5.2.2 <{email}>: Mailbox full",
    "gave up after 6 attempts: timed out connecting to the recipient's mail server",
)


def _invitations(
    draw: _Draw,
    people: list[PlannedContact],
    specs: dict[str, dict[str, Any]],
    intents: list[_Intent],
    answers: list[PlannedAnswer],
    end: datetime,
    answer: Callable[..., None],
) -> tuple[list[PlannedInvitation], list[PlannedUnsubscribe]]:
    """Each invitation's fate in send order: bounced (the contact left), failed, cancelled, or sent;
    then maybe reminded, answered (an answer with the invitation's times), or followed by an unsubscribe."""
    rng = draw.rng
    out: list[PlannedInvitation] = []
    unsubscribed: dict[int, datetime] = {}
    unsubscribes: list[PlannedUnsubscribe] = []
    for send_at, i, survey, created, props in sorted(intents, key=lambda t: (t.send_at, t.contact)):
        contact, spec = people[i], specs[survey]
        if i in unsubscribed and unsubscribed[i] <= send_at:
            continue  # refused as "unsubscribed": no invitation
        inv = PlannedInvitation(i, survey, "sent", created, send_at, properties=props)
        out.append(inv)
        if contact.left is not None and send_at.date() >= contact.left:
            inv.status, inv.failed_reason = "failed", BOUNCE.format(email=contact.email)
            continue
        roll = rng.random()
        if roll < 0.008:
            inv.status, inv.failed_reason = "failed", rng.choice(SOFT_FAILURES).format(email=contact.email)
            continue
        if roll < 0.02 and created < send_at - timedelta(hours=6):
            inv.status, inv.cancelled = "cancelled", created + timedelta(hours=rng.uniform(1, 5))
            continue
        inv.sent = send_at + timedelta(seconds=rng.randrange(2, 40))
        remind_days = spec.get("reminderAfterDays")
        reminder = (
            inv.sent + timedelta(days=remind_days, minutes=rng.randrange(0, 30)) if remind_days else None
        )
        closes = spec.get("endsAt") or end
        chance = INVITATION_ANSWER_RATE[survey] * contact.responsiveness
        roll = rng.random()
        answered: datetime | None = None
        if roll < chance * (0.72 if reminder else 1.0):
            hours = rng.expovariate(1 / 9)
            limit = (remind_days * 24 - 1) if remind_days else 240
            answered = inv.sent + timedelta(seconds=round(min(hours, limit) * 3600) + 60)
        elif reminder is not None and roll < chance:
            answered = reminder + timedelta(seconds=round(rng.expovariate(1 / 10) * 3600) + 60)
        if reminder is not None and reminder < min(end, closes) and (answered is None or answered > reminder):
            inv.reminded, inv.status = reminder, "reminded"
        if answered is not None and answered < min(end, closes):
            inv.answered, inv.status, inv.answer = answered, "answered", len(answers)
            answer(i, answered, "email", survey, sent=inv.sent, reminded=inv.reminded, custom=props)
        elif contact.company is not None and len(unsubscribes) < 6 and rng.random() < 0.015:
            at = inv.sent + timedelta(minutes=rng.randrange(5, 600))
            if at < end:
                unsubscribed[i] = at
                inv.reminded, inv.status = None, "sent"  # no reminder goes to an address that opted out
                unsubscribes.append(
                    PlannedUnsubscribe(i, at, rng.choice(("link", "one-click")), len(out) - 1)
                )
    return out, unsubscribes


# ------------------------------------------------------------------------------------------ writing


@dataclass(frozen=True)
class Credential:
    role: str
    email: str
    password: str


@dataclass(frozen=True)
class DemoResult:
    """What :func:`build` made, for the CLI to print."""

    org_id: str
    org_name: str
    surveys: int
    companies: int
    contacts: int
    answers: int
    first_day: date
    last_day: date
    months: int
    invitations: int
    response_rate: float | None
    unsubscribes: int
    users: list[Credential]
    reset: bool

    def summary(self) -> str:
        rate = "no response rate" if self.response_rate is None else f"response rate {self.response_rate}%"
        return (
            f"{'Rebuilt' if self.reset else 'Created'} demo organization {self.org_name!r}: "
            f"{self.surveys} surveys, {self.companies} companies, {self.contacts} contacts, "
            f"{self.answers:,} answers over {self.months} months ({self.first_day} to {self.last_day}), "
            f"{self.invitations:,} invitations ({rate}), {self.unsubscribes} unsubscribes, "
            f"{len(self.users)} users."
        )


def user_email(org_name: str, role: str) -> str:
    """The demo user of ``role``: ``admin@demo.example`` for organization ``demo``."""
    slug = _ascii(org_name)[:60].strip("-") or "demo"
    return f"{role}@{slug}.example"


def build(
    session: Session,
    settings: Settings,
    org_name: str = DEFAULT_ORG,
    seed: int = DEFAULT_SEED,
    reset: bool = False,
    today: date | None = None,
) -> DemoResult:
    """Write the demo organization ``org_name`` in the caller's transaction.

    An existing organization of that name is a 409, unless ``reset``: then it is deleted first,
    provided it is a demo organization (it has this command's admin); anything else is a 409 too.
    """
    existing = auth_service.find_org(session, org_name)
    admin = user_email(org_name, "admin")
    if existing is not None:
        if not reset:
            raise Conflict(f"organization {existing.name!r} exists; `npsd demo --reset` builds it again")
        made_here = session.scalar(select(User.id).where(User.org_id == existing.id, User.email == admin))
        if made_here is None:
            raise Conflict(
                f"organization {existing.name!r} was not made by `npsd demo` (it has no {admin}); "
                "--reset deletes only a demo organization"
            )
        _delete_org(session, existing.id)
    history = plan(seed, today)
    org = auth_service.ensure_org(session, org_name)
    # the voice of its mails and pages; no logo, so the demo loads nothing from elsewhere
    auth_service.update_profile(
        session,
        org,
        auth_service.Profile(name=org.name, sender_name="Customer Success", brand_color="#0f766e"),
    )
    users = [Credential(role, user_email(org_name, role), secrets.token_urlsafe(12)) for role in ROLES]
    for user in users:
        auth_service.create_user(session, org, user.email, user.role, user.password)
    survey_ids = _write_surveys(session, org.id, history)
    company_ids = _write_companies(session, org.id, history)
    contact_ids = _write_contacts(session, org.id, history, company_ids)
    record_ids = _write_answers(session, org.id, history, survey_ids)
    invitation_ids = _write_invitations(
        session, settings, org.id, history, survey_ids, contact_ids, company_ids, record_ids
    )
    _write_follow_ups(session, org.id, user_email(org_name, "editor"), user_email(org_name, "viewer"))
    # a Monday-morning digest to the admin (npsd.digests), so Settings -> Digests has one to show
    digests.create_digest(
        session,
        org.id,
        DigestCreate.model_validate(
            {
                "name": "Monday CX review",
                "frequency": "weekly",
                "weekday": "monday",
                "hour": 9,
                "timeZone": "Europe/Berlin",
                "emails": [admin],
            }
        ),
    )
    for unsub in history.unsubscribes:
        email = history.contacts[unsub.contact].email
        collect.unsubscribe(session, settings, org.id, email, unsub.source, invitation_ids[unsub.invitation])
        row = session.get(Unsubscribe, (org.id, collect.address_hash(settings, email)))
        assert row is not None
        row.created_at = unsub.at
    session.flush()
    days = [a.answered.date() for a in history.answers]
    answered = session.scalar(select(func.count()).select_from(NpsRecord).where(NpsRecord.org_id == org.id))
    return DemoResult(
        org_id=org.id,
        org_name=org.name,
        surveys=len(survey_ids),
        companies=len(company_ids),
        contacts=len(contact_ids),
        answers=int(answered or 0),
        first_day=min(days),
        last_day=max(days),
        months=_months_before(min(days), max(days)) + 1,
        invitations=len(invitation_ids),
        response_rate=response_rate_percent(session, org.id),
        unsubscribes=len(history.unsubscribes),
        users=users,
        reset=existing is not None,
    )


# The team's work on the newest unhappy answers (npsd.followup): tags, a note, a status, so the
# feed's filters and the answer page have something to show.
FOLLOW_UP_TAGS = (("Support",), ("Billing", "Churn risk"), ("Onboarding",), ("Product", "Churn risk"))
FOLLOW_UP_NOTES = (
    "Called back: the ticket had been closed by mistake. Reopened and escalated.",
    "Sent an apology and a credit note for the double charge.",
    "Booked a training session with their new admins.",
    "Logged as a feature request; the product team will follow up.",
)


def _write_follow_ups(session: Session, org_id: str, editor_email: str, viewer_email: str) -> None:
    """Tag, note and follow up the twelve newest detractors with a comment: the newest four are
    open (assigned to the viewer), the next four contacted, the rest resolved."""
    editor_id = session.scalar(select(User.id).where(User.org_id == org_id, User.email == editor_email))
    actor = followup.Actor(editor_id, editor_email)
    newest = session.scalars(
        select(NpsRecord.id)
        .where(NpsRecord.org_id == org_id, NpsRecord.score <= 6, NpsRecord.comment.is_not(None))
        .order_by(NpsRecord.date_answered.desc(), NpsRecord.id.desc())
        .limit(12)
    ).all()
    for i, record_id in enumerate(newest):
        followup.set_tags(session, org_id, record_id, list(FOLLOW_UP_TAGS[i % len(FOLLOW_UP_TAGS)]), actor)
        followup.set_follow_up(session, org_id, record_id, "open", viewer_email, actor)
        if i >= 4:
            followup.add_note(session, org_id, record_id, FOLLOW_UP_NOTES[i % len(FOLLOW_UP_NOTES)], actor)
            followup.set_follow_up(
                session, org_id, record_id, "contacted" if i < 8 else "resolved", None, actor
            )


def _delete_org(session: Session, org_id: str) -> None:
    """Delete an organization and everything in it. Answers, contacts and invitations first: they
    refer to contacts and companies without a cascade; the rest goes with the organization."""
    for table in (NpsRecord, NpsRollup, Invitation, Enduser):
        session.execute(delete(table).where(table.org_id == org_id))
    session.execute(delete(Organization).where(Organization.id == org_id))
    session.expunge_all()  # rows deleted by the database's cascades


def _write_surveys(session: Session, org_id: str, history: Plan) -> dict[str, str]:
    ids: dict[str, str] = {}
    created = _at(history.start - timedelta(days=24), 10)
    for key, body in history.surveys.items():
        out = surveys.create_survey(session, org_id, SurveyCreate.model_validate(body))
        ids[key] = out["id"]
        survey = surveys.find_survey(session, org_id, out["id"])
        if key == BETA:  # set up just before the beta, switched off the day after it ended
            survey.created_at, survey.updated_at = (
                body["startsAt"] - timedelta(days=2),
                body["endsAt"] + timedelta(days=1),
            )
        else:
            survey.created_at = survey.updated_at = created
    collect.ensure_public_id(session, org_id, ids[SUPPORT])  # the link on the ticket page
    session.flush()
    return ids


def _write_companies(session: Session, org_id: str, history: Plan) -> list[str]:
    ids: list[str] = []
    for n, spec in enumerate(COMPANIES):
        body = CompanyInput.model_validate(
            {
                "name": spec.name,
                "domains": [spec.domain],
                "externalId": f"crm-{1001 + n}",
                "status": "customer",
                "phase": spec.phase,
                "description": spec.description,
                "custom": {
                    "country": spec.country,
                    "industry": spec.industry,
                    "plan": spec.plan,
                    "arr": spec.arr,
                    "csm": CSMS[n % len(CSMS)],
                },
            }
        )
        company = contacts.create_company(session, org_id, body.column_values())
        joined = min(
            (c.since for c in history.contacts if c.company == n), default=history.start
        ) - timedelta(days=7)
        company.created_at = company.updated_at = _at(joined, 11)
        ids.append(company.id)
    session.flush()
    return ids


def _write_contacts(session: Session, org_id: str, history: Plan, company_ids: list[str]) -> list[str]:
    ids: list[str] = []
    for n, c in enumerate(history.contacts):
        body = EnduserInput.model_validate(
            {
                "email": c.email,
                "firstName": c.first_name,
                "lastName": c.last_name,
                "position": c.position,
                "phone": c.phone,
                "primary": c.primary,
                "archived": c.left is not None,
                "companyId": company_ids[c.company] if c.company is not None else None,
                "externalId": f"user-{2001 + n}",
                "custom": {"language": c.language, "country": c.country},
            }
        )
        enduser = contacts.create_enduser(session, org_id, body.column_values())
        enduser.created_at = enduser.updated_at = _at(c.since - timedelta(days=1), 12)
        if c.left is not None:
            enduser.updated_at = _at(c.left + timedelta(days=30), 12)
        ids.append(enduser.id)
    session.flush()
    return ids


def _write_answers(session: Session, org_id: str, history: Plan, survey_ids: dict[str, str]) -> list[str]:
    """Every answer through the bulk upsert of ``PUT /nps``; the new records' ids, in plan order."""
    items: list[dict[str, Any]] = []
    for a in history.answers:
        item: dict[str, Any] = {
            "email": history.contacts[a.contact].email,
            "score": a.score,
            "source": a.source,
            "dateAnswered": a.answered,
        }
        for key, value in (
            ("comment", a.comment),
            ("campaignId", survey_ids[a.survey] if a.survey is not None else None),
            ("sourceId", a.source_id),
            ("dateSent", a.sent),
            ("dateReminderSent", a.reminded),
            ("custom", a.custom),
        ):
            if value is not None:
                item[key] = value
        items.append(item)
    ids: list[str] = []
    for chunk in range(0, len(items), MAX_BULK):
        outcome = records.bulk_upsert(session, org_id, items[chunk : chunk + MAX_BULK])
        if outcome.failed:
            errors = outcome.created_errors + outcome.updated_errors
            raise NpsdError(f"the demo answers were refused: {errors[:3]}")
        ids.extend(outcome.upserted_ids)
    return ids


def _write_invitations(
    session: Session,
    settings: Settings,
    org_id: str,
    history: Plan,
    survey_ids: dict[str, str],
    contact_ids: list[str],
    company_ids: list[str],
    record_ids: Sequence[str],
) -> list[str]:
    """The invitations' history, as rows shaped like ``collect.service.create_invitations`` writes
    them (token hash included), with the times and outcomes the job worker would have set."""
    ids = new_ids(len(history.invitations))
    ttl = timedelta(days=settings.invitation_ttl_days)
    rows: list[dict[str, Any]] = []
    for inv_id, inv in zip(ids, history.invitations, strict=True):
        c = history.contacts[inv.contact]
        changed = max(
            t for t in (inv.created, inv.sent, inv.reminded, inv.answered, inv.cancelled, inv.send_at) if t
        )
        rows.append(
            {
                "id": inv_id,
                "org_id": org_id,
                "survey_id": survey_ids[inv.survey],
                "enduser_id": contact_ids[inv.contact],
                "company_id": company_ids[c.company] if c.company is not None else None,
                "email": c.email,
                "email_key": email_key(c.email),
                "name": f"{c.first_name} {c.last_name}",
                "locale": c.language,
                "properties": inv.properties,
                "token_hash": collect.hash_token(collect.invitation_token(settings, inv_id)),
                "status": inv.status,
                "send_at": inv.send_at,
                "sent_at": inv.sent,
                "reminded_at": inv.reminded,
                "answered_at": inv.answered,
                "cancelled_at": inv.cancelled,
                "failed_reason": inv.failed_reason,
                "record_id": record_ids[inv.answer] if inv.answer is not None else None,
                "expires_at": (inv.sent or inv.send_at) + ttl,
                "created_at": inv.created,
                "updated_at": changed,
            }
        )
    for chunk in range(0, len(rows), 1000):
        session.execute(insert(Invitation), rows[chunk : chunk + 1000])
    return ids
