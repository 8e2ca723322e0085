"""The built-in words of the four emails, in English, German, French and Spanish.

Merchant fields (subject, preheader, heading, body, button text) start from these and may be
overridden per locale in `EmailTemplate.fields`; the chrome around them (star prompt, footer,
"not arrived yet?") is always ours. Field copy is sandboxed Jinja (see okapp.emails.sandbox).
"""

from __future__ import annotations

from okapp.models import EmailKind

SUPPORTED_LOCALES = ("en", "de", "fr", "es")
FIELD_NAMES = ("subject", "preheader", "heading", "body", "button_text")

_HI = {
    "en": "Hi{% if customer.first_name %} {{ customer.first_name }}{% endif %},",
    "de": "Hallo{% if customer.first_name %} {{ customer.first_name }}{% endif %},",
    "fr": "Bonjour{% if customer.first_name %} {{ customer.first_name }}{% endif %},",
    "es": "Hola{% if customer.first_name %} {{ customer.first_name }}{% endif %}:",
}

DEFAULT_NAMES = {
    EmailKind.REQUEST.value: "Review request",
    EmailKind.REMINDER.value: "Reminder",
    EmailKind.SECOND_REMINDER.value: "Second reminder",
    EmailKind.MEDIA_REQUEST.value: "Photo and video request",
}

DEFAULT_FIELDS: dict[str, dict[str, dict[str, str]]] = {
    EmailKind.REQUEST.value: {
        "en": {
            "subject": "How did you like your order from {{ shop.name }}?",
            "preheader": "Rate your purchase in one click.",
            "heading": "How was your order?",
            "body": _HI["en"] + "\n\nThank you for shopping with {{ shop.name }}. We would love to"
                    " hear what you think of your purchase. Your review helps other customers"
                    " choose and takes less than a minute.",
            "button_text": "Write a review",
        },
        "de": {
            "subject": "Wie gefällt Ihnen Ihre Bestellung bei {{ shop.name }}?",
            "preheader": "Bewerten Sie Ihren Einkauf mit einem Klick.",
            "heading": "Wie war Ihre Bestellung?",
            "body": _HI["de"] + "\n\nvielen Dank für Ihren Einkauf bei {{ shop.name }}. Wir würden"
                    " gern erfahren, wie Ihnen Ihr Kauf gefällt. Ihre Bewertung hilft anderen"
                    " Kunden bei der Auswahl und dauert weniger als eine Minute.",
            "button_text": "Bewertung schreiben",
        },
        "fr": {
            "subject": "Votre commande chez {{ shop.name }} vous a-t-elle plu ?",
            "preheader": "Notez votre achat en un clic.",
            "heading": "Comment s'est passée votre commande ?",
            "body": _HI["fr"] + "\n\nMerci pour votre achat chez {{ shop.name }}. Nous aimerions"
                    " connaître votre avis. Votre évaluation aide les autres clients à choisir et"
                    " ne prend qu'une minute.",
            "button_text": "Donner mon avis",
        },
        "es": {
            "subject": "¿Qué te pareció tu pedido de {{ shop.name }}?",
            "preheader": "Valora tu compra con un clic.",
            "heading": "¿Qué tal tu pedido?",
            "body": _HI["es"] + "\n\nGracias por comprar en {{ shop.name }}. Nos encantaría saber"
                    " qué opinas de tu compra. Tu reseña ayuda a otros clientes a elegir y te"
                    " llevará menos de un minuto.",
            "button_text": "Escribir una reseña",
        },
    },
    EmailKind.REMINDER.value: {
        "en": {
            "subject": "A quick reminder: review your order {{ order.name }}",
            "preheader": "Your opinion takes a minute and helps a lot.",
            "heading": "Got a minute?",
            "body": _HI["en"] + "\n\nWe haven't heard from you yet. How are you finding your"
                    " purchase from {{ shop.name }}? Just tap a star below.",
            "button_text": "Write a review",
        },
        "de": {
            "subject": "Kurze Erinnerung: Bewerten Sie Ihre Bestellung {{ order.name }}",
            "preheader": "Ihre Meinung dauert eine Minute und hilft sehr.",
            "heading": "Haben Sie eine Minute?",
            "body": _HI["de"] + "\n\nwir haben noch nichts von Ihnen gehört. Wie gefällt Ihnen Ihr"
                    " Einkauf bei {{ shop.name }}? Tippen Sie einfach unten auf einen Stern.",
            "button_text": "Bewertung schreiben",
        },
        "fr": {
            "subject": "Petit rappel : donnez votre avis sur la commande {{ order.name }}",
            "preheader": "Votre avis prend une minute et aide beaucoup.",
            "heading": "Vous avez une minute ?",
            "body": _HI["fr"] + "\n\nNous n'avons pas encore eu de vos nouvelles. Que pensez-vous"
                    " de votre achat chez {{ shop.name }} ? Touchez simplement une étoile"
                    " ci-dessous.",
            "button_text": "Donner mon avis",
        },
        "es": {
            "subject": "Un recordatorio: valora tu pedido {{ order.name }}",
            "preheader": "Tu opinión lleva un minuto y ayuda mucho.",
            "heading": "¿Tienes un minuto?",
            "body": _HI["es"] + "\n\nAún no sabemos nada de ti. ¿Qué te parece tu compra en"
                    " {{ shop.name }}? Toca una estrella aquí abajo.",
            "button_text": "Escribir una reseña",
        },
    },
    EmailKind.SECOND_REMINDER.value: {
        "en": {
            "subject": "Last chance to review your order {{ order.name }}",
            "preheader": "This is the last time we'll ask.",
            "heading": "One last ask",
            "body": _HI["en"] + "\n\nThis is our last reminder, promise. If you have a moment,"
                    " tell other shoppers what you think of your order from {{ shop.name }}.",
            "button_text": "Review my order",
        },
        "de": {
            "subject": "Letzte Gelegenheit: Bewerten Sie Ihre Bestellung {{ order.name }}",
            "preheader": "Wir fragen zum letzten Mal.",
            "heading": "Eine letzte Bitte",
            "body": _HI["de"] + "\n\ndies ist unsere letzte Erinnerung, versprochen. Wenn Sie einen"
                    " Moment Zeit haben, erzählen Sie anderen, wie Ihnen Ihre Bestellung bei"
                    " {{ shop.name }} gefällt.",
            "button_text": "Bestellung bewerten",
        },
        "fr": {
            "subject": "Dernière occasion de noter votre commande {{ order.name }}",
            "preheader": "C'est la dernière fois que nous vous le demandons.",
            "heading": "Une dernière demande",
            "body": _HI["fr"] + "\n\nC'est notre dernier rappel, promis. Si vous avez un instant,"
                    " dites aux autres clients ce que vous pensez de votre commande chez"
                    " {{ shop.name }}.",
            "button_text": "Noter ma commande",
        },
        "es": {
            "subject": "Última oportunidad para valorar tu pedido {{ order.name }}",
            "preheader": "Es la última vez que te lo pedimos.",
            "heading": "Una última petición",
            "body": _HI["es"] + "\n\nEste es nuestro último recordatorio, lo prometemos. Si tienes"
                    " un momento, cuenta a otros clientes qué te pareció tu pedido de"
                    " {{ shop.name }}.",
            "button_text": "Valorar mi pedido",
        },
    },
    EmailKind.MEDIA_REQUEST.value: {
        "en": {
            "subject": "Thanks for your review! Add a photo?",
            "preheader": "Show other shoppers your purchase in real life.",
            "heading": "Thank you for your review",
            "body": _HI["en"] + "\n\nThank you for reviewing your order from {{ shop.name }}."
                    " A photo or a short video shows other shoppers what to expect. Would you"
                    " add one?",
            "button_text": "Add photos or a video",
        },
        "de": {
            "subject": "Danke für Ihre Bewertung! Fügen Sie ein Foto hinzu?",
            "preheader": "Zeigen Sie anderen Ihren Einkauf im echten Leben.",
            "heading": "Danke für Ihre Bewertung",
            "body": _HI["de"] + "\n\ndanke, dass Sie Ihre Bestellung bei {{ shop.name }} bewertet"
                    " haben. Ein Foto oder kurzes Video zeigt anderen, was sie erwartet. Möchten"
                    " Sie eines hinzufügen?",
            "button_text": "Fotos oder Video hinzufügen",
        },
        "fr": {
            "subject": "Merci pour votre avis ! Ajouter une photo ?",
            "preheader": "Montrez votre achat aux autres clients.",
            "heading": "Merci pour votre avis",
            "body": _HI["fr"] + "\n\nMerci d'avoir noté votre commande chez {{ shop.name }}. Une"
                    " photo ou une courte vidéo montre aux autres clients à quoi s'attendre."
                    " Voulez-vous en ajouter une ?",
            "button_text": "Ajouter des photos ou une vidéo",
        },
        "es": {
            "subject": "¡Gracias por tu reseña! ¿Añades una foto?",
            "preheader": "Muestra tu compra a otros clientes.",
            "heading": "Gracias por tu reseña",
            "body": _HI["es"] + "\n\nGracias por valorar tu pedido de {{ shop.name }}. Una foto o"
                    " un vídeo corto muestra a otros clientes qué esperar. ¿Quieres añadir uno?",
            "button_text": "Añadir fotos o un vídeo",
        },
    },
}

# The chrome of every email: not merchant-editable, so plain strings (no Jinja).
CHROME: dict[str, dict[str, str]] = {
    "en": {
        "rate_prompt": "Tap a star to rate it",
        "star_label": "Rate {rating} out of 5",
        "add_media": "Add a photo or video",
        "not_arrived": "Order not arrived yet? Tell us and we'll ask again later.",
        "unsubscribe": "Unsubscribe",
        "why": "You are receiving this email because you ordered from {shop}.",
        "review_link": "Review it here",
    },
    "de": {
        "rate_prompt": "Tippen Sie auf einen Stern",
        "star_label": "Mit {rating} von 5 bewerten",
        "add_media": "Foto oder Video hinzufügen",
        "not_arrived": "Bestellung noch nicht angekommen? Sagen Sie es uns, wir fragen später.",
        "unsubscribe": "Abmelden",
        "why": "Sie erhalten diese E-Mail, weil Sie bei {shop} bestellt haben.",
        "review_link": "Hier bewerten",
    },
    "fr": {
        "rate_prompt": "Touchez une étoile pour noter",
        "star_label": "Noter {rating} sur 5",
        "add_media": "Ajouter une photo ou une vidéo",
        "not_arrived": "Commande pas encore reçue ? Dites-le-nous, nous redemanderons plus tard.",
        "unsubscribe": "Se désabonner",
        "why": "Vous recevez cet e-mail car vous avez commandé chez {shop}.",
        "review_link": "Donner mon avis ici",
    },
    "es": {
        "rate_prompt": "Toca una estrella para valorar",
        "star_label": "Valorar con {rating} de 5",
        "add_media": "Añadir una foto o un vídeo",
        "not_arrived": "¿Tu pedido aún no ha llegado? Avísanos y te preguntaremos más tarde.",
        "unsubscribe": "Darse de baja",
        "why": "Recibes este correo porque hiciste un pedido en {shop}.",
        "review_link": "Valorar aquí",
    },
}


def pick_locale(customer_locale: str, shop_locale: str) -> str:
    """The customer's language when we have copy for it, else the shop's, else English.

    Shopify locales look like `de`, `de-CH` or `pt-BR`; only the language part matters here.
    """
    for candidate in (customer_locale, shop_locale):
        language = (candidate or "").replace("_", "-").split("-")[0].lower()
        if language in SUPPORTED_LOCALES:
            return language
    return "en"


def default_fields(kind: str, locale: str) -> dict[str, str]:
    by_locale = DEFAULT_FIELDS[kind]
    return dict(by_locale.get(locale) or by_locale["en"])

# The pages a customer reaches from an email's footer, in the email's language.
PUBLIC_PAGES: dict[str, dict[str, str]] = {
    "en": {
        "unsubscribe_title": "Unsubscribe from {shop}?",
        "unsubscribe_lead": "Stop review emails from {shop} to {address}.",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_lead": "{address} will not receive review emails from {shop} again.",
        "unsubscribe_note": "Order confirmations and shipping updates from {shop} are not affected.",
        "not_arrived_title": "Hasn't your order arrived yet?",
        "not_arrived_lead": "Tell us and {shop} will ask for your review later, once you've had "
                            "a chance to try it.",
        "not_arrived_button": "It hasn't arrived yet",
        "not_arrived_done_title": "Thanks for letting us know",
        "not_arrived_done_lead": "We'll ask for your review in about {days} days, once your "
                                 "order has had time to arrive.",
    },
    "de": {
        "unsubscribe_title": "Von {shop} abmelden?",
        "unsubscribe_lead": "Keine Bewertungs-E-Mails mehr von {shop} an {address}.",
        "unsubscribe_button": "Abmelden",
        "unsubscribed_title": "Sie sind abgemeldet",
        "unsubscribed_lead": "{address} erhält keine Bewertungs-E-Mails von {shop} mehr.",
        "unsubscribe_note": "Bestellbestätigungen und Versandinfos von {shop} sind davon nicht "
                            "betroffen.",
        "not_arrived_title": "Ist Ihre Bestellung noch nicht angekommen?",
        "not_arrived_lead": "Sagen Sie es uns, dann fragt {shop} später nach Ihrer Bewertung, "
                            "wenn Sie alles ausprobieren konnten.",
        "not_arrived_button": "Noch nicht angekommen",
        "not_arrived_done_title": "Danke für Ihre Nachricht",
        "not_arrived_done_lead": "Wir fragen in etwa {days} Tagen nach Ihrer Bewertung, wenn "
                                 "Ihre Bestellung angekommen sein sollte.",
    },
    "fr": {
        "unsubscribe_title": "Se désabonner de {shop} ?",
        "unsubscribe_lead": "Ne plus recevoir les demandes d'avis de {shop} à {address}.",
        "unsubscribe_button": "Se désabonner",
        "unsubscribed_title": "Vous êtes désabonné",
        "unsubscribed_lead": "{address} ne recevra plus de demandes d'avis de {shop}.",
        "unsubscribe_note": "Les confirmations de commande et d'expédition de {shop} ne sont "
                            "pas concernées.",
        "not_arrived_title": "Votre commande n'est pas encore arrivée ?",
        "not_arrived_lead": "Dites-le-nous et {shop} vous demandera votre avis plus tard, "
                            "quand vous aurez pu l'essayer.",
        "not_arrived_button": "Pas encore arrivée",
        "not_arrived_done_title": "Merci de nous avoir prévenus",
        "not_arrived_done_lead": "Nous vous demanderons votre avis dans environ {days} jours, "
                                 "le temps que votre commande arrive.",
    },
    "es": {
        "unsubscribe_title": "¿Darte de baja de {shop}?",
        "unsubscribe_lead": "Dejar de recibir correos de reseñas de {shop} en {address}.",
        "unsubscribe_button": "Darme de baja",
        "unsubscribed_title": "Te has dado de baja",
        "unsubscribed_lead": "{address} no recibirá más correos de reseñas de {shop}.",
        "unsubscribe_note": "Las confirmaciones de pedido y de envío de {shop} no se ven "
                            "afectadas.",
        "not_arrived_title": "¿Tu pedido aún no ha llegado?",
        "not_arrived_lead": "Avísanos y {shop} te pedirá tu reseña más adelante, cuando hayas "
                            "podido probarlo.",
        "not_arrived_button": "Aún no ha llegado",
        "not_arrived_done_title": "Gracias por avisarnos",
        "not_arrived_done_lead": "Te pediremos tu reseña dentro de unos {days} días, cuando tu "
                                 "pedido haya llegado.",
    },
}
