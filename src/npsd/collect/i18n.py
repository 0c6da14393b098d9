"""The words of survey e-mails and respondent pages in English, German, French and Spanish.

The language is the recipient's ``locale`` when npsd speaks it, else the survey's ``language``,
else English; only the base language counts (``de-CH`` is ``de``). A survey that keeps the
default question (or follow-up question) gets it in that language, naming the organization; a
text the survey's author wrote is shown in the recipient's language when the survey has its
translation, else the whole mail or page is in the survey's language (``survey_texts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from npsd.kit.models import Survey
from npsd.surveys.schemas import DEFAULT_FOLLOW_UP, DEFAULT_QUESTION, TRANSLATABLE

LANGUAGES = TRANSLATABLE  # the survey API accepts translations into exactly these
FALLBACK = "en"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "subject": "A quick question for you",
        "reminder_subject": "Reminder: a quick question for you",
        "greeting_name": "Hello {name},",
        "greeting": "Hello,",
        "intro": "We would love to hear what you think. One click is all it takes:",
        "reminder_intro": "A few days ago we asked for your opinion. If you have a moment, one click is all "
        "it takes:",
        "scale_low": "Not at all likely",
        "scale_high": "Extremely likely",
        "click_note": "Clicking a number records your answer; you can add a comment on the next page.",
        "unsubscribe_note": "Don't want these e-mails?",
        "unsubscribe_link": "Unsubscribe",
        "question": DEFAULT_QUESTION,
        "question_org": "How likely are you to recommend {org} to a friend or colleague?",
        "privacy": "Privacy policy",
        "follow_up": DEFAULT_FOLLOW_UP,
        "page_title": "Your feedback",
        "scale_hint": "0 = not at all likely, 10 = extremely likely",
        "optional": "(optional)",
        "submit": "Send",
        "recorded": "Thank you! Your score of {score} has been recorded. Would you like to tell us more?",
        "thanks_title": "Thank you",
        "thanks": "Thank you for your feedback!",
        "closed_title": "This survey is closed",
        "closed_text": "It no longer accepts answers. Thank you for your interest.",
        "not_found_title": "This link is not valid",
        "not_found_text": "Please check that you copied the whole link from the e-mail.",
        "expired_title": "This link has expired",
        "expired_text": "Survey links stay valid for a limited time only.",
        "withdrawn_title": "This invitation was withdrawn",
        "withdrawn_text": "There is nothing more you need to do.",
        "choose_score": "Please choose a score from 0 to 10.",
        "comment_invalid": "The comment is too long or contains characters that cannot be stored.",
        "bad_email_title": "This link carries an invalid e-mail address",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_text": "Stop sending survey e-mails to {email}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_text": "{email} will receive no more survey e-mails from us.",
        "too_many_title": "Too many answers",
        "too_many_text": "Please try again later.",
    },
    "de": {
        "subject": "Eine kurze Frage an Sie",
        "reminder_subject": "Erinnerung: Eine kurze Frage an Sie",
        "greeting_name": "Hallo {name},",
        "greeting": "Hallo,",
        "intro": "Wir würden uns über Ihre Meinung freuen. Ein Klick genügt:",
        "reminder_intro": "Vor einigen Tagen haben wir Sie um Ihre Meinung gebeten. Wenn Sie einen Moment Zeit "
        "haben, genügt ein Klick:",
        "scale_low": "Überhaupt nicht wahrscheinlich",
        "scale_high": "Äußerst wahrscheinlich",
        "click_note": "Ein Klick auf eine Zahl speichert Ihre Antwort; auf der nächsten Seite können Sie einen "
        "Kommentar hinzufügen.",
        "unsubscribe_note": "Sie möchten diese E-Mails nicht mehr erhalten?",
        "unsubscribe_link": "Abmelden",
        "question": "Wie wahrscheinlich ist es, dass Sie uns einem Freund oder Kollegen weiterempfehlen?",
        "question_org": "Wie wahrscheinlich ist es, dass Sie {org} einem Freund oder Kollegen weiterempfehlen?",
        "privacy": "Datenschutzerklärung",
        "follow_up": "Was ist der wichtigste Grund für Ihre Bewertung?",
        "page_title": "Ihre Meinung",
        "scale_hint": "0 = überhaupt nicht wahrscheinlich, 10 = äußerst wahrscheinlich",
        "optional": "(optional)",
        "submit": "Absenden",
        "recorded": "Danke! Ihre Bewertung {score} wurde gespeichert. Möchten Sie uns mehr erzählen?",
        "thanks_title": "Vielen Dank",
        "thanks": "Vielen Dank für Ihr Feedback!",
        "closed_title": "Diese Umfrage ist geschlossen",
        "closed_text": "Sie nimmt keine Antworten mehr an. Danke für Ihr Interesse.",
        "not_found_title": "Dieser Link ist ungültig",
        "not_found_text": "Bitte prüfen Sie, ob Sie den vollständigen Link aus der E-Mail kopiert haben.",
        "expired_title": "Dieser Link ist abgelaufen",
        "expired_text": "Umfrage-Links sind nur begrenzte Zeit gültig.",
        "withdrawn_title": "Diese Einladung wurde zurückgezogen",
        "withdrawn_text": "Sie müssen nichts weiter tun.",
        "choose_score": "Bitte wählen Sie eine Bewertung von 0 bis 10.",
        "comment_invalid": "Der Kommentar ist zu lang oder enthält Zeichen, die nicht gespeichert werden können.",
        "bad_email_title": "Dieser Link enthält eine ungültige E-Mail-Adresse",
        "unsubscribe_title": "Abmelden",
        "unsubscribe_text": "Keine Umfrage-E-Mails mehr an {email} senden?",
        "unsubscribe_button": "Abmelden",
        "unsubscribed_title": "Sie sind abgemeldet",
        "unsubscribed_text": "{email} erhält von uns keine Umfrage-E-Mails mehr.",
        "too_many_title": "Zu viele Antworten",
        "too_many_text": "Bitte versuchen Sie es später noch einmal.",
    },
    "fr": {
        "subject": "Une petite question pour vous",
        "reminder_subject": "Rappel : une petite question pour vous",
        "greeting_name": "Bonjour {name},",
        "greeting": "Bonjour,",
        "intro": "Votre avis nous intéresse. Un clic suffit :",
        "reminder_intro": "Il y a quelques jours, nous vous avons demandé votre avis. Si vous avez un instant, "
        "un clic suffit :",
        "scale_low": "Pas du tout probable",
        "scale_high": "Très probable",
        "click_note": "Cliquer sur un chiffre enregistre votre réponse ; vous pourrez ajouter un commentaire "
        "sur la page suivante.",
        "unsubscribe_note": "Vous ne souhaitez plus recevoir ces e-mails ?",
        "unsubscribe_link": "Se désabonner",
        "question": "Quelle est la probabilité que vous nous recommandiez à un ami ou à un collègue ?",
        "question_org": "Quelle est la probabilité que vous recommandiez {org} à un ami ou à un collègue ?",
        "privacy": "Politique de confidentialité",
        "follow_up": "Quelle est la principale raison de votre note ?",
        "page_title": "Votre avis",
        "scale_hint": "0 = pas du tout probable, 10 = très probable",
        "optional": "(facultatif)",
        "submit": "Envoyer",
        "recorded": "Merci ! Votre note de {score} a été enregistrée. Souhaitez-vous nous en dire plus ?",
        "thanks_title": "Merci",
        "thanks": "Merci pour votre avis !",
        "closed_title": "Cette enquête est close",
        "closed_text": "Elle n'accepte plus de réponses. Merci de votre intérêt.",
        "not_found_title": "Ce lien n'est pas valide",
        "not_found_text": "Vérifiez que vous avez copié le lien complet depuis l'e-mail.",
        "expired_title": "Ce lien a expiré",
        "expired_text": "Les liens d'enquête ne sont valables que pendant une durée limitée.",
        "withdrawn_title": "Cette invitation a été retirée",
        "withdrawn_text": "Vous n'avez rien d'autre à faire.",
        "choose_score": "Veuillez choisir une note de 0 à 10.",
        "comment_invalid": "Le commentaire est trop long ou contient des caractères qui ne peuvent pas être "
        "enregistrés.",
        "bad_email_title": "Ce lien contient une adresse e-mail non valide",
        "unsubscribe_title": "Se désabonner",
        "unsubscribe_text": "Ne plus envoyer d'e-mails d'enquête à {email} ?",
        "unsubscribe_button": "Se désabonner",
        "unsubscribed_title": "Vous êtes désabonné",
        "unsubscribed_text": "{email} ne recevra plus d'e-mails d'enquête de notre part.",
        "too_many_title": "Trop de réponses",
        "too_many_text": "Veuillez réessayer plus tard.",
    },
    "es": {
        "subject": "Una pregunta rápida para usted",
        "reminder_subject": "Recordatorio: una pregunta rápida para usted",
        "greeting_name": "Hola, {name}:",
        "greeting": "Hola:",
        "intro": "Nos encantaría conocer su opinión. Solo hace falta un clic:",
        "reminder_intro": "Hace unos días le pedimos su opinión. Si tiene un momento, solo hace falta un clic:",
        "scale_low": "Nada probable",
        "scale_high": "Muy probable",
        "click_note": "Al hacer clic en un número se registra su respuesta; en la página siguiente podrá "
        "añadir un comentario.",
        "unsubscribe_note": "¿No desea recibir estos correos?",
        "unsubscribe_link": "Darse de baja",
        "question": "¿Qué probabilidad hay de que nos recomiende a un amigo o colega?",
        "question_org": "¿Qué probabilidad hay de que recomiende {org} a un amigo o colega?",
        "privacy": "Política de privacidad",
        "follow_up": "¿Cuál es el motivo principal de su puntuación?",
        "page_title": "Su opinión",
        "scale_hint": "0 = nada probable, 10 = muy probable",
        "optional": "(opcional)",
        "submit": "Enviar",
        "recorded": "¡Gracias! Se ha registrado su puntuación de {score}. ¿Quiere contarnos algo más?",
        "thanks_title": "Gracias",
        "thanks": "¡Gracias por su opinión!",
        "closed_title": "Esta encuesta está cerrada",
        "closed_text": "Ya no acepta respuestas. Gracias por su interés.",
        "not_found_title": "Este enlace no es válido",
        "not_found_text": "Compruebe que ha copiado el enlace completo del correo.",
        "expired_title": "Este enlace ha caducado",
        "expired_text": "Los enlaces de la encuesta solo son válidos durante un tiempo limitado.",
        "withdrawn_title": "Esta invitación se ha retirado",
        "withdrawn_text": "No tiene que hacer nada más.",
        "choose_score": "Elija una puntuación de 0 a 10.",
        "comment_invalid": "El comentario es demasiado largo o contiene caracteres que no se pueden guardar.",
        "bad_email_title": "Este enlace contiene una dirección de correo no válida",
        "unsubscribe_title": "Darse de baja",
        "unsubscribe_text": "¿Dejar de enviar correos de encuestas a {email}?",
        "unsubscribe_button": "Darse de baja",
        "unsubscribed_title": "Se ha dado de baja",
        "unsubscribed_text": "{email} no recibirá más correos de encuestas.",
        "too_many_title": "Demasiadas respuestas",
        "too_many_text": "Inténtelo de nuevo más tarde.",
    },
}


def base_language(tag: str | None) -> str | None:
    """``de-CH`` -> ``de``; None for an empty tag."""
    if not tag:
        return None
    return tag.replace("_", "-").split("-", 1)[0].lower() or None


def pick(*tags: str | None) -> str:
    """The first of ``tags`` npsd speaks, else English."""
    for tag in tags:
        lang = base_language(tag)
        if lang in MESSAGES:
            return lang
    return FALLBACK


class Words:
    """The messages of one language, as ``words.subject`` or ``words("recorded", score=9)``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in MESSAGES else FALLBACK
        self._messages = MESSAGES[self.lang]

    def __getattr__(self, key: str) -> str:
        try:
            return self._messages[key]
        except KeyError:
            raise AttributeError(key) from None

    def __call__(self, key: str, **values: Any) -> str:
        return self._messages[key].format(**values)


def _is_default(text: str | None, default: str) -> bool:
    return text is None or not text.strip() or text.strip() == default


@dataclass(frozen=True)
class Texts:
    """Everything a recipient reads, in one language: npsd's words and the survey's texts."""

    words: Words
    question: str
    follow_up: str
    thanks: str

    @property
    def lang(self) -> str:
        return self.words.lang


def _texts_in(survey: Survey, org_name: str, lang: str) -> Texts | None:
    """The survey's texts in ``lang``, or None when one of them exists only in another language."""
    words = Words(lang)
    translated: dict[str, str] = {}
    if lang != base_language(survey.language):
        translated = (survey.translations or {}).get(lang) or {}
        if not translated.get("question") and not _is_default(survey.question, DEFAULT_QUESTION):
            return None
        if not translated.get("followUpQuestion") and not _is_default(
            survey.follow_up_question, DEFAULT_FOLLOW_UP
        ):
            return None
        if not translated.get("thankYouMessage") and survey.thank_you_message:
            return None
    question = translated.get("question") or survey.question
    follow_up = translated.get("followUpQuestion") or survey.follow_up_question
    return Texts(
        words=words,
        question=(
            words("question_org", org=org_name) if _is_default(question, DEFAULT_QUESTION) else question
        ),
        follow_up=words.follow_up if _is_default(follow_up, DEFAULT_FOLLOW_UP) else str(follow_up),
        thanks=translated.get("thankYouMessage") or survey.thank_you_message or words.thanks,
    )


def survey_texts(survey: Survey, org_name: str, *tags: str | None) -> Texts:
    """The mail's or page's texts, all in one language.

    The language is the first of ``tags`` (a page's ``?lang``, the invitation's locale) that npsd
    speaks and the survey can be read in entirely: every text the survey's author wrote
    (question, follow-up question, thank-you message) has its translation there
    (``translations``). Otherwise the whole mail and page are in the survey's language, never a
    Spanish greeting above an English question. The default texts exist in
    every language and name the organization. A survey whose own language npsd does not speak
    gets English words around the texts as written.
    """
    for tag in tags:
        lang = base_language(tag)
        if lang in MESSAGES:
            found = _texts_in(survey, org_name, lang)
            if found is not None:
                return found
    own = pick(survey.language)
    found = _texts_in(survey, org_name, own)
    if found is None:  # the survey speaks a language npsd does not: its texts as written
        words = Words(own)
        question = survey.question
        follow_up = survey.follow_up_question
        return Texts(
            words=words,
            question=words("question_org", org=org_name)
            if _is_default(question, DEFAULT_QUESTION)
            else question,
            follow_up=words.follow_up if _is_default(follow_up, DEFAULT_FOLLOW_UP) else str(follow_up),
            thanks=survey.thank_you_message or words.thanks,
        )
    return found


def translated_languages(survey: Survey) -> set[str]:
    """The languages the survey has translations for (besides its own)."""
    return set(survey.translations or {})
