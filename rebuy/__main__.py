from rebuy.cli import app

app(prog_name="rebuy")
