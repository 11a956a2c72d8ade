// Tests that take a while, as integration tests do: the first run measures them, and later
// runs (`--write-timings`/`--timings`, or the history artifact on GitHub) start them first.

const {total} = require('../src/cart');

const pause = ms => new Promise(resolve => setTimeout(resolve, ms));

test('a big cart', async () => {
  await pause(800);
  const lines = Array.from({length: 1000}, () => ({price: 1, quantity: 3}));
  expect(total(lines)).toBe(3000);
});

test.todo('a cart in another currency');
