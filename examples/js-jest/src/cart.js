// A shopping cart: lines of a price (in cents) and a quantity, and a discount code.

const CODES = {TENOFF: 0.1, HALF: 0.5};

function total(lines, code) {
  const sum = lines.reduce((cents, line) => cents + line.price * line.quantity, 0);
  if (code === undefined) {
    return sum;
  }
  if (!(code in CODES)) {
    throw new Error(`unknown discount code: ${code}`);
  }
  return Math.round(sum * (1 - CODES[code]));
}

module.exports = {total};
