import smtplib, ssl, httpx
from email.message import EmailMessage

def test_http(http_server):
    http_server.respond("/a", 503, {"ok": 1})
    assert httpx.get(http_server.url("/a")).status_code == 503
    r = httpx.get(http_server.url("/a?x=1&x=2"))
    assert r.json() == {"ok": 1}
    assert httpx.get(http_server.url("/a")).json() == {"ok": 1}
    assert httpx.get(http_server.url("/b")).status_code == 404
    assert http_server.requests_to("/a")[1].query == {"x": ["1", "2"]}

def test_smtp(smtp_server, smtp_tls_server, smtp_ssl_server):
    m = EmailMessage(); m["From"]="a@b.c"; m["To"]="d@e.f"; m["Subject"]="hi"; m.set_content("body")
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as s:
        s.login(smtp_server.username, smtp_server.password); s.send_message(m)
    assert smtp_server.messages[0].message["Subject"] == "hi"
    ctx = ssl.create_default_context(); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE
    with smtplib.SMTP(smtp_tls_server.host, smtp_tls_server.port) as s:
        s.starttls(context=ctx); s.login(smtp_tls_server.username, smtp_tls_server.password); s.send_message(m)
    with smtplib.SMTP_SSL(smtp_ssl_server.host, smtp_ssl_server.port, context=ctx) as s:
        s.login(smtp_ssl_server.username, smtp_ssl_server.password); s.send_message(m)
    assert len(smtp_ssl_server.messages) == 1 and len(smtp_tls_server.messages) == 1
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as s:
        try:
            s.send_message(m)
        except smtplib.SMTPSenderRefused as e:
            assert e.smtp_code == 530
