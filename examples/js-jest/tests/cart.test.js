const {total} = require('../src/cart');

describe('total', () => {
  const lines = [
    {price: 250, quantity: 2},
    {price: 1000, quantity: 1},
  ];

  test('adds every line', () => {
    expect(total(lines)).toBe(1500);
  });

  describe('with a discount code', () => {
    test.each([
      ['TENOFF', 1350],
      ['HALF', 750],
    ])('%s gives %i', (code, cents) => {
      expect(total(lines, code)).toBe(cents);
    });

    test('an unknown code is refused', () => {
      expect(() => total(lines, 'FREE')).toThrow('unknown discount code: FREE');
    });
  });
});
